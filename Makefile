# Two commands: `make demo` and `make test`. Both build .venv with the pinned stack and install coadv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
EXTRAS := $(VENV)/.extras-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-all lint bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade --quiet pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/coadv demo

# tests run on WORKERS processes (pytest-xdist, one torch thread each); WORKERS=0 runs them in this process
WORKERS ?= 2

# the fast tier: shapes, invariants, errors, a fast_dev_run of every config family (646 tests, 4 min 31 s on 2 idle cores)
test: $(STAMP)
	WANDB_MODE=disabled $(VENV)/bin/python -m pytest -n $(WORKERS) -m "not slow and not gpu"

# the optional extras (SpeechBrain adapter exactness, PESQ / STOI, the GE2E victim) so that test-all checks them too
$(EXTRAS): $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[speechbrain,perceptual,resemblyzer]'
	rm -f $(VENV)/.extras-* && touch $(EXTRAS)

# everything CPU can run: adds learning checks, multi-process DDP, the optional extras' tests (CI runs this)
test-all: $(EXTRAS)
	WANDB_MODE=disabled $(VENV)/bin/python -m pytest -m "not gpu"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/translation_throughput.py

clean:
	rm -rf runs .cache .pytest_cache build *.egg-info
