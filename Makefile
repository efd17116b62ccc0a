# kwb — kernel patch-series workbench. `make test-series` is the main job; `make test` is what CI runs.
VENV    ?= .venv
PY      := $(VENV)/bin/python
KWB     := $(VENV)/bin/kwb
PYTEST_ARGS ?=
# test-series variables: run the same pipeline on a user's tree for one revision of the 2020 series
TREE    ?=
BASE    ?=
# SOURCE empty: the shared archive beside the checkout if there is one, else lore (b4) when online,
# else the static concern step is skipped (the kernel part needs no mail). SOURCE=lore: lore only.
SOURCE  ?=
REV     ?=
REVS    ?=
COVERAGE ?= 0
FRESH_BASELINE ?= 0

.PHONY: setup test test-unit test-series lint bench clean

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/pytest.sh $(PYTEST_ARGS)

# Unit tier only: fakes, seconds. Real-kernel tests are skipped with an explicit flag, never silently.
test-unit: setup
	@KWB_SKIP_REAL=1 bash scripts/pytest.sh -m "not real" $(PYTEST_ARGS)

test-series: setup
	@$(KWB) test-series $(if $(SOURCE),--source "$(SOURCE)") $(if $(TREE),--tree "$(TREE)") $(if $(BASE),--base "$(BASE)") \
		$(if $(REV),--revision "$(REV)") $(if $(REVS),--revisions "$(REVS)") $(if $(filter 1,$(COVERAGE)),--coverage) \
		$(if $(filter 1,$(FRESH_BASELINE)),--fresh-baseline)

lint: setup
	$(VENV)/bin/ruff check harness tests scripts
	$(VENV)/bin/mypy

bench: setup
	$(PY) scripts/bench_series.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
