# Ombre: `make demo` runs the gateway on embedded defaults; `make test` runs every check.
# `make demo` installs only what the demo needs: a venv with the demo's extras (OPC UA,
# Modbus) and mosquitto. `make test` adds the dev tools to the same venv and the Debian
# packages the integration tests need (PostgreSQL, Chromium, VictoriaMetrics...), so run
# them as root or with sudo on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# the demo starts its own mosquitto when no broker answers on 127.0.0.1:1883
DEMO_DEB_PACKAGES := mosquitto
TEST_DEB_PACKAGES := openssl postgresql-client chromium chromium-driver victoria-metrics
# deploy/ checks: shellcheck, docker-compose (config only, no engine), systemd-analyze
TEST_DEB_PACKAGES += shellcheck docker-compose systemd
# the dashboard in Firefox: tests/firefox drives firefox-esr with puppeteer-core on Node
TEST_DEB_PACKAGES += firefox-esr nodejs
# the network and clock faults of tests/faults: ip netns and TUN links (iproute2), libfaketime
TEST_DEB_PACKAGES += iproute2 faketime
# the Debian package's tests: a throwaway Debian root, booted under systemd-nspawn
# (tests/deploy/test_deb.py)
TEST_DEB_PACKAGES += debootstrap systemd-container
# the package on arm64 under emulation (tests/deploy/test_arm64.py): qemu-aarch64, which
# the test registers with binfmt_misc itself (no binfmt-support needed)
TEST_DEB_PACKAGES += qemu-user-static
# Installs the Debian packages of $(1) that are missing.
APT_INSTALL = @missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; fi

.PHONY: demo test lint lint-deploy bench lock demo-deps system-deps test-services clean deb bundle

# The demo's extras (opcua, modbus), at the versions of requirements.lock; again whenever
# pyproject.toml or the lock changes (`make lock`).
$(BIN)/ombre: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[demo]'
	@touch $@

# Every extra and the dev tools, added to the same venv: `make demo` after `make test`
# finds everything installed, and `make test` after `make demo` installs the rest.
DEV := $(VENV)/.dev-installed
$(DEV): $(BIN)/ombre
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $@

# Pins every dependency of `.[dev]` (so of every extra) for all platforms, the Pi's too;
# keeps the pins that still fit, unless `make lock UPGRADE=--upgrade`.
lock: $(DEV)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		$(UPGRADE) -o requirements.lock

demo-deps:
	$(call APT_INSTALL,$(DEMO_DEB_PACKAGES))

system-deps:
	$(call APT_INSTALL,$(DEMO_DEB_PACKAGES) $(TEST_DEB_PACKAGES))

test-services: system-deps
	$(SUDO) sh deploy/test-postgres.sh

demo: $(BIN)/ombre demo-deps
	$(BIN)/ombre demo --speed 30

lint: $(DEV) lint-deploy
	$(BIN)/ruff check gateway shadow connectors api sim ombre tests bench
	$(BIN)/mypy --strict gateway shadow connectors api sim ombre bench

lint-deploy: $(DEV) system-deps
	shellcheck deploy/install.sh deploy/compose/mosquitto-start.sh deploy/debian/*.sh \
		deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm
	$(BIN)/hadolint deploy/Dockerfile

# Every test starts its own servers on free ports (or its own PostgreSQL schema), so
# the rest run two files at a time, one per core. The fault and demo tests spend
# minutes waiting through outages that last wall-clock time (30 s, 60 s, 2 min); they
# run three files at a time, after the rest, and show what they print (lost,
# duplicated, recovery time) even when they pass.
WAITING_TESTS := tests/faults tests/sim

test: $(DEV) test-services lint node-deps
	$(BIN)/pytest -n 2 --dist loadfile $(addprefix --ignore=,$(WAITING_TESTS))
	$(BIN)/pytest -n 3 --dist loadfile -rP $(WAITING_TESTS)

bench: $(DEV) system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data dist .mypy_cache .ruff_cache .pytest_cache

# The Debian package, dist/ombre_<version>_<arch>.deb, with every wheel it needs for
# DEB_ARCH (this machine's by default; `make deb DEB_ARCH=arm64` for a Raspberry Pi 4/5),
# and the offline bundle, dist/ombre-<version>-<arch>.tar: the package, its installer
# and their checksums (deploy/debian/).
DEB_ARCH ?= $(shell dpkg --print-architecture)
deb: $(BIN)/ombre
	sh deploy/debian/build.sh --arch $(DEB_ARCH) --out dist

bundle: $(BIN)/ombre
	sh deploy/debian/bundle.sh --arch $(DEB_ARCH) --out dist

# puppeteer-core for tests/api/test_firefox.py (WebDriver BiDi, no geckodriver), and
# protobufjs and MQTT.js for the Sparkplug B peer of tests/connectors/test_sparkplug.py
# (tests/sparkplug/node.mjs). npm ci runs again only when a lock changes, so later runs
# need no network. npm comes with NodeSource's nodejs, and separately with Debian's.
NODE_DEPS := tests/firefox/node_modules/.package-lock.json tests/sparkplug/node_modules/.package-lock.json
.PHONY: node-deps
node-deps: $(NODE_DEPS)
tests/%/node_modules/.package-lock.json: tests/%/package-lock.json | system-deps
	@command -v npm >/dev/null || $(SUDO) apt-get install -y --no-install-recommends npm
	cd tests/$* && npm ci --ignore-scripts --no-audit --no-fund

# connectors/sparkplug_b_pb2.py(i) from the Sparkplug B schema (Eclipse Tahu's
# sparkplug_b.proto), with the protoc of grpcio-tools at a pinned version; its
# "Protobuf Python Version" sets the lower bound of the `sparkplug` extra's protobuf.
PROTOC_VERSION := 1.85.1
.PHONY: proto
proto: $(BIN)/ombre
	$(BIN)/pip install --quiet uv
	cd connectors && ../$(BIN)/uvx --from grpcio-tools==$(PROTOC_VERSION) python -m grpc_tools.protoc \
		-I. --python_out=. --pyi_out=. sparkplug_b.proto
