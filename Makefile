# Set-up from scratch, then run. `make demo` and `make test` are all a newcomer needs.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch: on this kind of machine pip takes it from the local wheel cache.
# On a CUDA machine: make setup TORCH_SPEC='torch>=2.4'
TORCH_SPEC ?= torch==2.13.0

export TOKENIZERS_PARALLELISM := false
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup demo test test-slow test-slurm test-browser test-cpu-kinds lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(PY) -m src.train experiment=demo

test: setup
	$(PY) -m pytest -q

# The longer tests the default run leaves out (marker `slow`: scripts/benchmark.py end to end, SIGKILL and resume
# in both precisions), on two workers.
test-slow: setup
	$(PY) -m pytest -q -m slow

# Sweeps on a real SLURM cluster that the tests start on localhost (tests/helpers/slurm_cluster.py). Installs
# Debian's slurm-wlm and munge when they are missing and this is root; elsewhere the tests are skipped with the
# reason.
test-slurm: setup
	@if ! command -v sbatch >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; }; fi
	$(PY) -m pytest -q -m slurm -n 0

# src.compare's page in headless Chromium. Installs Debian's chromium when it is missing and this is root.
test-browser: setup
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; fi
	$(PY) -m pytest -q -m browser -n 0

# The suite as on each kind of CPU, whichever this one is: precision=auto resolved as on a CPU with
# AMX/AVX512-BF16 (bf16-mixed), then as on one with AVX2 only (fp32; torch and oneDNN held to AVX2 kernels).
test-cpu-kinds: setup
	WARMSTART_CPU_BF16=1 $(PY) -m pytest -q
	WARMSTART_CPU_BF16=0 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests scripts hydra_plugins
	$(VENV)/bin/ruff format --check src tests scripts hydra_plugins

clean:
	rm -rf $(VENV) .pytest_cache
