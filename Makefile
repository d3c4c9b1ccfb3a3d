# Two commands set everything up on a fresh machine:
#   make demo   installs fitwell in .venv and trains the main example
#   make test   installs fitwell with its test tools and runs the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of PyTorch: a bare "torch" requirement can pull a CUDA build of several GB.
# On a machine with a GPU, install the torch build you want first, or: make TORCH=torch
TORCH ?= torch==2.13.0

.PHONY: install demo test test-timm bench lint clean

$(BIN)/fitwell: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/fitwell

demo: install
	$(BIN)/fitwell train examples/breast_cancer.yaml

test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not serial"
	$(BIN)/python -m pytest -q -m serial

# The timm extra needs torchvision, which does not pair with the CPU torch above: its tests
# (tests/models/test_timm.py, skipped in `make test` without timm) run in their own venv with a
# matching pair (x86_64; on aarch64: make test-timm TIMM_TORCH="torch==2.9.1 torchvision==0.24.1").
TIMM_TORCH ?= torch==2.14.1 torchvision==0.29.1

.venv-timm/bin/fitwell: pyproject.toml
	$(PYTHON) -m venv .venv-timm
	.venv-timm/bin/python -m pip install -q $(TIMM_TORCH)
	.venv-timm/bin/python -m pip install -q -e ".[dev,timm]"
	touch $@

test-timm: .venv-timm/bin/fitwell
	.venv-timm/bin/python -m pytest -q tests/models/test_timm.py tests/models/test_contract.py -k timm

bench: install
	$(BIN)/python bench/loop_overhead.py

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) .venv-timm runs .pytest_cache
