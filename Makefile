# Two entry points for a fresh machine (see README):
#   make run    start the server on the embedded defaults (SQLite, dev TLS, ports 3389/3636)
#   make test   lint, type-check and run the whole test suite
# Both create .venv on first use and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

DATA_DIR       ?= ./data
LISTEN         ?= 127.0.0.1:3389
LDAPS_LISTEN   ?= 127.0.0.1:3636
BASE_DN        ?= dc=example,dc=org
# Empty: the server's default, a SQLite file <data dir>/ldapsrv.db.
DATABASE       ?=
CONTROL_SOCKET ?= $(DATA_DIR)/control.sock
# CONFIG=path/to/ldapsrv.toml runs with that file instead of the defaults above.
# SAMPLE=1 adds sample people and groups first (their passwords are printed once).
CONFIG         ?=

DATABASE_ARG := $(if $(strip $(DATABASE)),--database '$(DATABASE)')
ifeq ($(strip $(CONFIG)),)
UPGRADE_ARGS := --data-dir $(DATA_DIR) $(DATABASE_ARG)
SERVE_ARGS   := --listen $(LISTEN) --ldaps-listen $(LDAPS_LISTEN) --base-dn '$(BASE_DN)' \
                --data-dir $(DATA_DIR) --control-socket $(CONTROL_SOCKET) $(DATABASE_ARG)
else
UPGRADE_ARGS := --config $(CONFIG)
SERVE_ARGS   := --config $(CONFIG)
endif

.PHONY: run test lint pytest venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: pip runs again only when pyproject.toml is newer than the stamp.
$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[postgresql,mariadb]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,postgresql,mariadb]'
	touch $@

venv: $(VENV)/.stamp-test

run: $(VENV)/.stamp-run
	install -d -m 0700 $(DATA_DIR)
	$(BIN)/ldapsrv db upgrade $(UPGRADE_ARGS)
	if [ -n "$(SAMPLE)" ]; then $(BIN)/ldapsrv db sample $(UPGRADE_ARGS); fi
	exec $(BIN)/ldapsrv serve $(SERVE_ARGS)

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: $(VENV)/.stamp-test
	$(BIN)/pytest -q

test: lint pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
