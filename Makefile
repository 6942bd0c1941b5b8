# Every target installs what it needs into .venv, through constraints.txt, which pins the CPU
# torch wheel: without it pip may pull a multi-GB CUDA build of a newer torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-system demo bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e ".[dev,demo]"
	touch $(STAMP)

install: $(STAMP)

# The default suite skips the slow system tier (other processes: kill -9 fault injection, a load
# test through uvicorn, torchrun, Chromium); CI, which has the time, runs it too.
test: $(STAMP)
	bash tests/setup_browser.sh
	$(PY) -m pytest -q -m "not system"
	if [ -n "$$CI" ]; then $(PY) -m pytest -q -m system; fi

test-system: $(STAMP)
	bash tests/setup_browser.sh
	$(PY) -m pytest -q -m system

test-fast: $(STAMP)
	$(PY) -m pytest -q -m unit

demo: $(STAMP)
	$(VENV)/bin/polytask demo

bench: $(STAMP)
	$(PY) bench/finetune_sst2.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
