# Ombre: `make demo` runs the gateway on embedded defaults; `make test` runs every check.
# Both create .venv when it is absent; `make test` also installs the Debian packages
# the integration tests need (mosquitto, PostgreSQL, Chromium, VictoriaMetrics), so run it as root or with sudo on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PACKAGES := mosquitto openssl postgresql-client chromium chromium-driver victoria-metrics
# deploy/ checks: shellcheck, docker-compose (config only, no engine), systemd-analyze
DEB_PACKAGES += shellcheck docker-compose systemd
# the dashboard in Firefox: tests/firefox drives firefox-esr with puppeteer-core on Node
DEB_PACKAGES += firefox-esr nodejs
# the network and clock faults of tests/faults: ip netns and TUN links (iproute2), libfaketime
DEB_PACKAGES += iproute2 faketime

.PHONY: demo test lint lint-deploy bench lock system-deps test-services clean

# Every extra (opcua, modbus, s7, influx, postgres) and the dev tools, at the versions of
# requirements.lock; again whenever pyproject.toml or the lock changes (`make lock`).
$(BIN)/ombre: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $@

# Pins every dependency of `.[dev]` (so of every extra) for all platforms, the Pi's too;
# keeps the pins that still fit, unless `make lock UPGRADE=--upgrade`.
lock: $(BIN)/ombre
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		$(UPGRADE) -o requirements.lock

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; fi

test-services: system-deps
	$(SUDO) sh deploy/test-postgres.sh

demo: $(BIN)/ombre system-deps
	$(BIN)/ombre demo --speed 30

lint: $(BIN)/ombre lint-deploy
	$(BIN)/ruff check gateway shadow connectors api sim ombre tests bench
	$(BIN)/mypy --strict gateway shadow connectors api sim ombre

lint-deploy: $(BIN)/ombre system-deps
	shellcheck deploy/install.sh deploy/compose/mosquitto-start.sh
	$(BIN)/hadolint deploy/Dockerfile

# The fault and demo tests spend minutes waiting through outages that last wall-clock
# time (30 s, 60 s, 2 min); they run three files at a time, after the rest, and show
# what they print (lost, duplicated, recovery time) even when they pass.
WAITING_TESTS := tests/faults tests/sim

test: $(BIN)/ombre test-services lint node-deps
	$(BIN)/pytest $(addprefix --ignore=,$(WAITING_TESTS))
	$(BIN)/pytest -n 3 --dist loadfile -rP $(WAITING_TESTS)

bench: $(BIN)/ombre system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache

# puppeteer-core for tests/api/test_firefox.py (WebDriver BiDi, no geckodriver). npm ci
# runs again only when the lock changes, so later runs need no network. npm comes with
# NodeSource's nodejs, and separately with Debian's.
NODE_DEPS := tests/firefox/node_modules/.package-lock.json
.PHONY: node-deps
node-deps: $(NODE_DEPS)
$(NODE_DEPS): tests/firefox/package-lock.json | system-deps
	@command -v npm >/dev/null || $(SUDO) apt-get install -y --no-install-recommends npm
	cd tests/firefox && npm ci --ignore-scripts --no-audit --no-fund
