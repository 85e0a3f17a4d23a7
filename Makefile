# Two commands on a fresh machine: `make demo` and `make test` (each installs what it needs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NATURALNESS := "distillmos==0.9.1" "xls-r-sqa==0.1.0"

.PHONY: install demo test test-slow bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	# The CPU wheel first, so nothing can pull a multi-GB CUDA build of torch.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	# The eval extra's naturalness judge, without its declared dependencies: they name torchaudio
	# (no build for this torch; pip would pull a mismatched one) and transformers, unused here.
	$(PY) -m pip install --quiet --no-deps $(NATURALNESS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m melganvc demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/inversion.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
