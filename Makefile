# Two entry points: `make demo` (install, then the demo sweep on embedded defaults) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build of torch; install your own CUDA build into .venv first to use a GPU.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint clean

$(BIN)/lossweep: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	@touch $(BIN)/lossweep

install: $(BIN)/lossweep

demo: install
	$(BIN)/lossweep demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
