# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed  ## install, then sync the bundled sample into a local Pipedrive sandbox (twice)
	$(BIN)/sync-job demo

test: $(BIN)/.installed  ## install, then run the whole test suite
	$(BIN)/pytest -q

lint: $(BIN)/.installed  ## style and types
	$(BIN)/ruff check sync_job tests bench
	$(BIN)/ruff format --check sync_job tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .sync-job .pytest_cache .mypy_cache .ruff_cache
