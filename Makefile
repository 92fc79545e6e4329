# Quick start: `make demo` and `make test`. Both create .venv on first use.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-dev
PIP := $(VENV)/bin/pip --disable-pip-version-check

.PHONY: demo test format lint bench bench-drift clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	@# pip older than 24 backtracks into an impossible s3fs/fsspec pin on this dependency set.
	$(PIP) install -q --upgrade 'pip>=25'
	$(PIP) install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/keel demo

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest

# Reformat and fix import order before a commit (make test checks both).
format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

# Benchmarks against MLflow live in their own environment: MLflow is never a dependency of keel.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml bench/requirements.txt
	@test -x $(BENCH_VENV)/bin/python || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check --upgrade 'pip>=25'
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -e '.[all]' -r bench/requirements.txt
	@touch $@

bench: $(BENCH_VENV)/.installed
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BENCH_VENV)/bin/python bench/tracking.py
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BENCH_VENV)/bin/python bench/registry.py
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BENCH_VENV)/bin/python bench/serving.py

# Drift benchmark against Evidently: its own environment, because Evidently 0.7 needs pandas < 3.
DRIFT_VENV := .venv-bench-drift
$(DRIFT_VENV)/.installed: pyproject.toml
	@test -x $(DRIFT_VENV)/bin/python || $(PY) -m venv $(DRIFT_VENV)
	@echo '*' > $(DRIFT_VENV)/.gitignore
	$(DRIFT_VENV)/bin/pip install -q --disable-pip-version-check -e '.[all]' 'pandas<3' 'evidently==0.7.*'
	@touch $@

bench-drift: $(DRIFT_VENV)/.installed
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(DRIFT_VENV)/bin/python bench/drift.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache
