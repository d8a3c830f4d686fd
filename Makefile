# The two commands of the README: `make test` and `make fit`. Each builds .venv on first use.
# TORCH_INDEX=https://download.pytorch.org/whl/cpu installs torch's CPU build first (no CUDA libraries).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test fit verify bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

# JOBS pytest-xdist workers (one per core of the 2-core CI machine); JOBS=0 runs in one process
JOBS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) $(PYTEST_ARGS)

fit: $(STAMP)
	$(BIN)/python -m train fit $(ARGS)

verify: $(STAMP)
	$(BIN)/python -m train verify $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_step.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) lightning_logs
