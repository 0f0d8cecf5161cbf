# Two entry points for a fresh machine (see README):
#   make run    start the server on the embedded defaults (SQLite, dev TLS, ports 3389/3636)
#   make test   lint, type-check and run the whole test suite
#   make bench  ldapsrv against OpenLDAP's slapd, side by side (bench/results/README.md)
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

# make bench BENCH_ARGS="--runs 1 --duration 3" (see python -m bench --help);
# BENCH_POSTGRESQL=<admin URL> adds ldapsrv on PostgreSQL (a scratch database).
BENCH_ARGS       ?=
BENCH_POSTGRESQL ?=
BENCH_OUTPUT     ?= bench/results/$(shell date -u +%Y-%m-%d).json

.PHONY: run test lint pytest venv clean bench soak

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

bench: $(VENV)/.stamp-test
	$(BIN)/python -m bench run --output $(BENCH_OUTPUT) \
		$(if $(strip $(BENCH_POSTGRESQL)),--postgresql '$(BENCH_POSTGRESQL)') $(BENCH_ARGS)

soak: $(VENV)/.stamp-test
	$(BIN)/python -m bench soak $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
