# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install run test test-sqlite test-postgres test-browser lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/vize migrate
	$(BIN)/vize serve

# The whole suite on SQLite, then on PostgreSQL the tests that reach the database (the hook
# in tests/fixtures.py keeps those; the e2e and browser tests start their own processes, and
# the scale-out test always uses PostgreSQL). Two pytest-xdist workers, one per core: much of
# the suite waits on servers, jobs and browsers; a module's tests stay on one worker.
XDIST := -n 2 --dist loadscope
test: install
	bash scripts/test-services.sh
	$(BIN)/pytest -q $(XDIST)
	VIZE_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q $(XDIST) -m "not e2e and not browser"

test-sqlite: install
	$(BIN)/pytest -q $(XDIST)

test-postgres: install
	bash scripts/test-services.sh
	VIZE_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q $(XDIST) -m "not e2e and not browser"

test-browser: install
	bash scripts/test-services.sh
	$(BIN)/pytest -q -m browser

lint: install
	$(BIN)/ruff check vize tests bench
	$(BIN)/ruff format --check vize tests bench
	$(BIN)/mypy vize

# The benchmarks read a CIFAR-10-style image folder given on the command line, e.g.
# `make bench DATASET=/path/to/cifar10-dev` (BENCHMARKS.md says which set its figures used).
bench: install
	@test -n "$(DATASET)" || { echo "usage: make bench DATASET=<folder of <label>/*.png>"; exit 2; }
	$(BIN)/python bench/api_bench.py --dataset "$(DATASET)" --backbone efficientnet_lite0 --no-embed-on-upload
	$(BIN)/python bench/memory_bench.py --dataset "$(DATASET)"
	$(BIN)/python bench/scale_bench.py --dataset "$(DATASET)"

clean:
	rm -rf $(VENV) data
