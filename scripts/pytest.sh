#!/usr/bin/env bash
# Runs pytest from the project venv; "no tests collected" (exit 5) is a failure, not a pass.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/.venv/bin/pytest" -ra "$@"
rc=$?
if [ $rc -eq 5 ]; then
    echo "pytest collected no tests: treating as failure" >&2
    exit 1
fi
exit $rc
