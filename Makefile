# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean lock wheelhouse

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

# The image installs these exact versions and hashes (runtime dependencies and the build backend, for Linux and the
# image's Python). The lock describes PyPI, so this machine's pip config (local mirrors, wheel folders) is ignored.
LOCK_FLAGS ?=
lock: $(BIN)/.installed  ## rewrite requirements.lock from pyproject.toml; run after changing dependencies
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet $(LOCK_FLAGS) --generate-hashes \
	  --allow-unsafe --strip-extras --all-build-deps --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml

# The air-gapped image build's input: the locked wheels for the image's platform, whatever machine downloads them.
# The image's glibc (Debian 12: 2.36) runs manylinux wheels up to 2_36.
WHEELHOUSE   ?= wheelhouse
IMAGE_PYTHON ?= 3.11
IMAGE_ARCH   ?= x86_64
wheelhouse: requirements.lock  ## download the wheels for `docker build --build-arg PIP_SOURCE=wheels` (any pip will do)
	$(PYTHON) -m pip download --quiet --no-deps --require-hashes --only-binary=:all: --dest $(WHEELHOUSE) \
	  --implementation cp --python-version $(IMAGE_PYTHON) \
	  $(foreach v,$(shell seq 17 36),--platform manylinux_2_$(v)_$(IMAGE_ARCH)) \
	  --platform manylinux2014_$(IMAGE_ARCH) --platform manylinux2010_$(IMAGE_ARCH) --platform manylinux1_$(IMAGE_ARCH) \
	  -r requirements.lock
