# Two entry points a new user needs: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck docs clean reference-model

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,docs]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/geotiler demo

lint: setup
	$(BIN)/ruff check geotiler tests benchmarks examples
	$(BIN)/ruff format --check geotiler tests benchmarks examples

typecheck: setup
	$(BIN)/mypy

# The API reference from the docstrings, built strictly (a broken reference fails) into a temporary
# folder; `$(BIN)/mkdocs serve` shows it while editing.
docs: setup
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir "$$site"; \
	status=$$?; rm -rf "$$site"; exit $$status

test: lint typecheck docs
	$(BIN)/pytest -n 2 --durations=15

# The small reference checkpoint shipped in models/reference (deterministic on CPU).
reference-model: setup
	$(BIN)/geotiler demo --quiet
	$(BIN)/geotiler export work/demo/run/best.pt -o models/reference/demo-unet-tiny.pt --overwrite

clean:
	rm -rf $(VENV) work .pytest_cache .mypy_cache .ruff_cache
