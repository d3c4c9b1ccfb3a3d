# Two commands set everything up on a fresh machine:
#   make demo   installs fitwell in .venv and trains the main example
#   make test   installs fitwell with its test tools and runs the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of PyTorch: a bare "torch" requirement can pull a CUDA build of several GB.
# On a machine with a GPU, install the torch build you want first, or: make TORCH=torch
TORCH ?= torch==2.13.0

.PHONY: install demo test bench lint clean

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
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/loop_overhead.py

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
