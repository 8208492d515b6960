# Ombre: `make demo` runs the gateway on embedded defaults; `make test` runs every check.
# Both create .venv when it is absent; `make test` also installs the Debian packages
# the integration tests need (mosquitto, PostgreSQL, Chromium), so run it as root or with sudo on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PACKAGES := mosquitto openssl postgresql-client chromium chromium-driver

.PHONY: demo test lint bench system-deps test-services clean

$(BIN)/ombre: pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; fi

test-services: system-deps
	$(SUDO) sh deploy/test-postgres.sh

demo: $(BIN)/ombre system-deps
	$(BIN)/ombre run deploy/config/plant.yaml

lint: $(BIN)/ombre
	$(BIN)/ruff check gateway shadow connectors api tests bench
	$(BIN)/mypy --strict gateway shadow connectors api

test: $(BIN)/ombre test-services lint
	$(BIN)/pytest

bench: $(BIN)/ombre system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
