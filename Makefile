# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build; a range-only requirement would pull a multi-GB CUDA build instead.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

CHECKOV := $(VENV)/tools/checkov/bin/checkov

.PHONY: help install prometheus checkov demo test nightly fuzz lint bench clean \
	deploy refresh port-forward stop-port-forward

help:
	@echo "make demo   the agent trains a CNN on MNIST (bundled digits offline) and reports"
	@echo "make test   run the test suite (installs everything it needs)"
	@echo "make nightly the deeper and larger variants; make fuzz  200 fuzzed calls per tool"
	@echo "make lint   ruff, import layers, mypy";  echo "make bench  throughput benchmarks"
	@echo "On a cluster (kubectl and its current context; OVERLAY=dev|gpu|prod, default dev):"
	@echo "make deploy             apply k8s/overlays/\$$OVERLAY, wait for MLflow and Prometheus"
	@echo "make refresh            delete and redeploy the overlay (for a new image); the namespace"
	@echo "                        and the PersistentVolumeClaims stay, so the data survives"
	@echo "make port-forward       MLflow on localhost:5000, Prometheus on :9090, the Ray dashboard"
	@echo "                        on :8265 while a sweep runs; prints the settings for the agent"
	@echo "make stop-port-forward  stop the forwards make port-forward started"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Prometheus from Debian's package, unpacked into the venv: no system service is started.
prometheus: $(STAMP)
	@if command -v prometheus >/dev/null 2>&1 || [ -x $(VENV)/bin/prometheus ]; then exit 0; fi; \
	command -v apt-get >/dev/null || { echo "error: Prometheus is missing and apt-get is not here; install prometheus and put it on PATH"; exit 1; }; \
	echo "Installing Prometheus from the Debian package into $(VENV)"; \
	dir=$(VENV)/opt/prometheus; rm -rf $$dir; mkdir -p $$dir; \
	( cd $$dir && apt-get download -q prometheus >/dev/null 2>&1 ) || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && ( cd $$dir && apt-get download -q prometheus >/dev/null 2>&1 ); } || \
	  { echo "error: could not download the prometheus package; run 'sudo apt-get update' and retry"; exit 1; }; \
	dpkg -x $$dir/prometheus_*.deb $$dir/root && ln -sf $$(pwd)/$$dir/root/usr/bin/prometheus $(VENV)/bin/prometheus; \
	$(VENV)/bin/prometheus --version | head -1

# checkov, the IaC scanner the Pod Security test uses, in a venv of its own: its pins would
# fight the project's.
checkov: $(CHECKOV)
$(CHECKOV):
	$(PYTHON) -m venv $(VENV)/tools/checkov
	$(VENV)/tools/checkov/bin/pip install -q "checkov>=3.2,<4"

# The seed scenario, end to end on this machine: the local stack, then the agent. Offline, MNIST
# can't be downloaded; the demo asks for the bundled digits as its fallback and says so.
demo: $(STAMP) prometheus
	$(VENV)/bin/trainops up
	$(VENV)/bin/trainops ask "Train a CNN on MNIST with 3 epochs" --yes --fallback-dataset digits
	@echo "The stack keeps running for a look at MLflow; stop it with: $(VENV)/bin/trainops down"

test: $(STAMP) prometheus checkov
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -n 2 --dist loadgroup

# The deeper and larger variants of make-test cases (marked nightly).
nightly: $(STAMP) prometheus checkov
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -n 2 --dist loadgroup -m "nightly and not gpu and not cluster and not llm"

# The nightly fuzzing depth: 200 argument sets per tool of every server.
fuzz: $(STAMP) prometheus
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest tests/mcp_servers/test_fuzz.py --hypothesis-profile nightly

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

bench: $(STAMP) prometheus
	$(PY) bench/train_throughput.py
	$(PY) bench/agent_overhead.py
	$(PY) bench/sweep_efficiency.py

# A cluster, the way a seed team drives one: k8s/cluster.sh does the work (its header lists the
# settings: OVERLAY, TRAINOPS_NAMESPACE, ROLLOUT_TIMEOUT, MLFLOW_LOCAL_PORT, PROMETHEUS_LOCAL_PORT,
# RAY_DASHBOARD_LOCAL_PORT, TRAINOPS_HOME); all but stop-port-forward need kubectl and a context.
OVERLAY ?= dev

deploy refresh port-forward stop-port-forward:
	@OVERLAY="$(OVERLAY)" $(SHELL) k8s/cluster.sh $@

clean:
	rm -rf $(VENV) .trainops .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
