# Two commands on a fresh machine: `make demo` and `make test` (each installs what it needs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NATURALNESS := "distillmos==0.9.1" "xls-r-sqa==0.1.0"

.PHONY: install demo test test-kernels test-slow bench lint clean

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

# The numeric tests again with PyTorch's kernels forced to older instruction sets (scalar ATen,
# SSE MKL and oneDNN): other float32 rounding, as on another CPU. A tolerance tuned to one
# machine's kernels fails here instead of on a user's machine.
KERNEL_TESTS := tests/dsp/test_inversion.py tests/dsp/test_mel.py tests/models/test_networks.py \
	tests/conversion/test_pipeline.py tests/conversion/test_converter.py \
	tests/conversion/test_export.py tests/training/test_step.py tests/e2e/test_hostile_api.py \
	tests/models/test_chunk_stream.py tests/training/test_losses.py tests/vocoders/test_hifigan.py \
	tests/detection/test_network.py tests/detection/test_detector.py \
	tests/detection/test_bundled_detector.py
test-kernels: $(STAMP)
	ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41 \
		$(PY) -m pytest -q -p no:cacheprovider $(KERNEL_TESTS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/inversion.py
	$(PY) benchmarks/vocoder.py
	$(PY) benchmarks/detect.py
	$(PY) benchmarks/stereo.py
	$(PY) benchmarks/sharing.py

# Style, the package's layers (pyproject.toml [tool.importlinter]) and types (py.typed is shipped).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks recipes
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info
