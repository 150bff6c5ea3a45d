# envmon — the few entry points everyone uses.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages the tests use: real servers and clients, never mocks.
SYSTEM_PKGS := mosquitto mosquitto-clients openssl openjdk-17-jre-headless maven postgresql chromium

.PHONY: help install system-deps lint test faults bench demo replay-demo clean server-jars kafka questdb influxdb alertmanager

help:
	@echo "make test   - install what the tests need, lint, run the whole suite"
	@echo "make lint   - ruff + mypy"
	@echo "make faults - the fault matrix on real servers (table in var/test-artifacts/)"
	@echo "make bench  - slow, opt-in benchmarks (results in bench/RESULTS.md)"
	@echo "make demo   - the whole pipeline on simulated equipment, with a live view"
	@echo "make replay-demo - replay the example site's scripted day offline"

# A fresh Debian machine as root may lack Python or its venv/ensurepip parts: install them.
$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 && $(PYTHON) -c "import ensurepip, venv" 2>/dev/null \
		|| (apt-get update && apt-get install -y python3 python3-venv)
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	@# Go builds the InfluxDB test server from the Go module proxy; Debian's only if none is here.
	@command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Kafka broker and QuestDB jars from Maven Central (deploy/kafka, deploy/questdb), InfluxDB
# 1.8 and Alertmanager 0.31.1 built from the Go module proxy (deploy/scripts/influxdb.sh,
# alertmanager.sh), cached in ~/.cache/envmon:
# fetched once here so the first test run does not wait for them.
server-jars: system-deps
	deploy/scripts/kafka.sh fetch
	deploy/scripts/questdb.sh fetch >/dev/null
	deploy/scripts/influxdb.sh fetch >/dev/null
	deploy/scripts/alertmanager.sh fetch >/dev/null

test: system-deps lint server-jars
	$(BIN)/pytest

# The fault matrix alone (also part of make test): every fault on the real servers with
# counted traffic; the table is printed and written to var/test-artifacts/fault-matrix.*.
faults: system-deps server-jars $(STAMP)
	$(BIN)/pytest tests/faults -s

# A local Kafka (KRaft) on 127.0.0.1:9092, data in var/kafka; Ctrl-C stops it.
kafka: server-jars
	deploy/scripts/kafka.sh start var/kafka 9092

# A local QuestDB (InfluxDB v2 write API on http://127.0.0.1:9000), data in var/questdb.
questdb: server-jars
	deploy/scripts/questdb.sh start var/questdb 9000

# A local InfluxDB 1.8 (v2 write API and Flux on http://127.0.0.1:8086, bucket envmon/autogen),
# data in var/influxdb.
influxdb: server-jars
	deploy/scripts/influxdb.sh start var/influxdb 8086

# A local Alertmanager 0.31.1 on http://127.0.0.1:9093 (a receiver that sends nothing), for
# trying the forwarder (alerting.alertmanager in the site file).
alertmanager: server-jars
	deploy/scripts/alertmanager.sh start var/alertmanager 9093

bench: system-deps server-jars $(STAMP)
	$(BIN)/python -m bench.replay_bench
	$(BIN)/python -m bench.opcua_bench --steps 2000,5000,10000,15000 --seconds 30
	$(BIN)/python -m bench.alerts_bench --postgres --rounds 100
	$(BIN)/python -m bench.mqtt_bench --messages 100000 --repeat 3
	$(BIN)/python -m bench.stream_bench --readings 400000 --sensors 1000 --seconds 30 --repeat 5

# The whole pipeline on the embedded defaults: amqtt broker, simulated equipment (MQTT and
# OPC-UA), both collectors, the buffer, the in-process bus, the core, SQLite; live view.
# Ctrl-C stops it. `envmon demo --help` for the options (speed, duration, summary).
demo: $(STAMP)
	$(BIN)/envmon demo

# Offline: the example site's scripted day replayed through the evaluation core.
DEMO_SITE := deploy/examples/site.yaml
replay-demo: $(STAMP)
	@mkdir -p build
	$(BIN)/envmon check-config $(DEMO_SITE)
	$(BIN)/python -m envmon.testing demo-readings $(DEMO_SITE) build/demo-readings.csv
	$(BIN)/envmon replay --config $(DEMO_SITE) --input build/demo-readings.csv \
		--output build/demo-events.jsonl
	@echo "Events (alarms, excursion records, data gaps): build/demo-events.jsonl"

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache .hypothesis
