# The two set-up commands are `make demo` and `make test`; both install first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real GLUE files beside the repo when they are there, else the suite downloads nyu-mll/glue.
GLUE_DIR ?= $(if $(wildcard ../shared/data/glue/MRPC/train.tsv),$(abspath ../shared/data/glue))
export GLUE_DIR
# Offline unless the hub is needed: the demo's and the tests' model ships in a pip package,
# so only missing GLUE files need it (the paper targets set it themselves, below).
export HF_HUB_OFFLINE ?= $(if $(GLUE_DIR),1,0)
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-fast test-slurm demo bench bench-agreement gpu-check gpu-check-bundle clean help

help:
	@echo "set-up and tests:  install | test | test-fast (no slow tests) | test-slurm | clean | gpu-check | gpu-check-bundle"
	@echo "CPU-sized studies: demo | mechanism | table1_minilm | freetickets_digits | bench | bench-agreement"
	@echo "paper artefacts:   table1 | table2 | table3 | figure3 | figure4 | sst2_footnote | other_tasks |"
	@echo "                   freetickets_cifar10 | freetickets_cifar100"
	@echo "DRY_RUN=1 make <target> prints its commands; SWEEP_ARGS=... / EVAL_ARGS=... add overrides (see README)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# One pytest-xdist worker per core (a test file stays on one worker; one torch thread each).
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# The whole pipeline on a CPU in under 10 minutes (docs/demo.md); DEMO_SEEDS=6 for more members,
# DEMO_JOBS=<n> parallel workers (default 2).
demo: install
	PYTHON=$(PY) bash multirun_sweeps/demo.sh

# Benchmarks (not timed tests): figures go to bench_results/*.json and docs/measurements.md.
# Precision auto: bf16 only where this CPU/GPU does it natively.
bench: install
	$(PY) benchmarks/bench_trainer.py throughput --precision auto
	$(PY) benchmarks/bench_batching.py --precision auto
	$(PY) benchmarks/bench_masking.py
	$(PY) benchmarks/bench_evaluate.py
	$(PY) benchmarks/bench_memory.py

# Length-grouped vs random batches: baseline dev accuracy on full MRPC, 3 seeds, the full 6-layer
# MiniLM for one epoch at lr 2e-4 (the paper's 3 epochs at 2e-5 cost 3x; a 3-layer cut stays at the
# majority class), two parallel 1-thread finetunes: sized for 40 min on 2 AVX2 cores (docs/measurements.md).
bench-agreement: install
	$(PY) benchmarks/bench_trainer.py agreement --compare grouping --precision auto --seeds 0 1 2 \
		--override trainer.epochs=1 trainer.lr=2e-4

# The prepared GPU check (scripts/gpu_check.py, docs/measurements.md): every method builds a member on
# the GPU, step times per precision, ours vs Trainer; < 5 min on one GPU; never part of `make test`.
# It needs no install: the python that has torch (CUDA) and transformers, and, without network, a
# bundle from `make gpu-check-bundle` (GPU_BUNDLE=<folder>). Report: bench_results/gpu_check.json.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
GPU_BUNDLE ?=
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py $(if $(GPU_BUNDLE),--bundle $(GPU_BUNDLE))

# Wheels (for the GPU machine's Python: GPU_PYTHON_VERSION) and 256 MRPC rows, where PyPI is reachable.
GPU_PYTHON_VERSION ?= 3.11
gpu-check-bundle: install
	$(PY) scripts/gpu_check.py --prepare $(or $(GPU_BUNDLE),.gpu_bundle) --python-version $(GPU_PYTHON_VERSION)

test-fast: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests

# Sweeps through the SLURM launcher on a real single-node cluster (docs/clusters.md); needs root
# and apt-get, which install and start it (scripts/slurm_cluster.sh). Not part of `make test`.
test-slurm: install
	$(PY) -m pytest -q -p no:cacheprovider --durations=0 tests_slurm

# Paper artefacts (multirun_sweeps/, README "Reproducing the papers"): sweep, then evaluate.
# Resumable: run the same target again after a crash. SWEEP_ARGS adds overrides to every
# training sweep (e.g. SWEEP_ARGS="hydra/launcher=joblib hydra.launcher.n_jobs=2"), EVAL_ARGS
# to every evaluation. The models come from the hub: SWEEP_HUB_OFFLINE=1 once they are cached.
SWEEPS := table1 table2 table3 figure3 figure4 sst2_footnote other_tasks
SWEEP_HUB_OFFLINE ?= 0
export SWEEP_ARGS EVAL_ARGS CHAIN_SEEDS
.PHONY: $(SWEEPS) freetickets_cifar10 freetickets_cifar100 freetickets_digits

$(SWEEPS): install
	HF_HUB_OFFLINE=$(SWEEP_HUB_OFFLINE) PYTHON=$(PY) bash multirun_sweeps/$@.sh

# L1 modes against Figure 4 on a CPU (docs/lottery.md); reports into results/mechanism/.
.PHONY: mechanism
mechanism: install
	PYTHON=$(PY) bash multirun_sweeps/mechanism.sh

# Multi-Ticket's Table 1 at CPU scale with members that learn (results/table1_minilm/): MRPC by
# default (~4.1 h on 2 cores of an AVX-512 EPYC, ~6 h on an AVX2 laptop), TABLE1_MINILM_TASK=stsb
# second. Resumable across machines from the member records it commits.
.PHONY: table1_minilm
table1_minilm: install
	PYTHON=$(PY) bash multirun_sweeps/table1_minilm.sh

freetickets_cifar10 freetickets_cifar100: install
	HF_HUB_OFFLINE=$(SWEEP_HUB_OFFLINE) PYTHON=$(PY) bash multirun_sweeps/freetickets_cifar.sh $(patsubst freetickets_%,%,$@)

# FreeTickets' study scaled down to the offline digits on a CPU (docs/freetickets.md; ~30 min on 2 cores).
freetickets_digits: install
	HF_HUB_OFFLINE=1 PYTHON=$(PY) bash multirun_sweeps/freetickets_digits.sh

clean:
	rm -rf store store_sst2_prune20 logs reports outputs wandb demo .pytest_cache
