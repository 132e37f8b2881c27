# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install run test test-sqlite test-postgres lint bench clean

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

test: install
	bash scripts/test-services.sh
	$(BIN)/pytest -q
	VIZE_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q

test-sqlite: install
	$(BIN)/pytest -q

test-postgres: install
	bash scripts/test-services.sh
	VIZE_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check vize tests bench
	$(BIN)/ruff format --check vize tests bench
	$(BIN)/mypy vize

clean:
	rm -rf $(VENV) data
