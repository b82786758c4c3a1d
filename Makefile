# Two commands: `make demo` and `make test`. Both build .venv with the pinned stack first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: demo test test-all lint bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade --quiet pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python demo.py

test: $(STAMP)
	WANDB_MODE=disabled $(VENV)/bin/python -m pytest

test-all: $(STAMP)
	WANDB_MODE=disabled $(VENV)/bin/python -m pytest -m ""

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/translation_throughput.py

clean:
	rm -rf runs .cache .pytest_cache
