"""``python -m harness.cli``: the same as the ``kwb`` console script."""

from harness.cli import main

raise SystemExit(main())
