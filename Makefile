# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA_DIR ?= .data

.PHONY: run test venv install node clean-data

# The Node test of the AI SDK stream reader needs node_modules when package.json exists.
NODE_STAMP := $(if $(wildcard package.json),node_modules/.installed,)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-install only when a requirements file changed since the last install.
$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv install: $(STAMP)

# flock: parallel `make test` runs in one checkout must not run two `npm ci` at once.
node_modules/.installed: package.json $(wildcard package-lock.json)
	flock .npm-install.lock sh -c 'test node_modules/.installed -nt package-lock.json || npm ci --no-audit --no-fund --loglevel=error'
	touch $@

node: $(NODE_STAMP)

run: $(STAMP)
	$(PY) -m daarion.devstack run --data-dir $(DATA_DIR)

# The test suite gets its own embedded servers under .data/test, so it never touches the
# data of a running `make run`.
test: $(STAMP) $(NODE_STAMP)
	$(PY) -m daarion.devstack exec --data-dir $(DATA_DIR)/test -- $(PY) -m pytest $(PYTEST_ARGS)

clean-data:
	$(PY) -m daarion.devstack reset --data-dir $(DATA_DIR)
