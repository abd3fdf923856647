# `make book` builds the HTML into _build/html; `make test` runs every check CI runs.
# Both create .venv (Python 3.10-3.12) and install requirements.txt into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAGE := tools/stage
# The benchmark sets: a local copy when one sits beside the repository (as in CI), else download/fallback.
DECONVLAB_DATA ?= $(shell test -d ../shared/datasets && cd ../shared/datasets && pwd)
ifneq ($(DECONVLAB_DATA),)
export DECONVLAB_DATA
endif

.PHONY: install book test lint unit notebooks execute student figures workshop clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(STAGE) "install" sh -c '$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -r requirements.txt'
	touch $@

install: $(VENV)/.installed

book: install
	$(STAGE) "book" $(VENV)/bin/jupyter-book build . --warningiserror --keep-going

lint: install
	$(STAGE) "lint" $(VENV)/bin/ruff check src tests tools benchmarks notebooks conftest.py

unit: install
	$(STAGE) "unit tests" env DECONVLAB_PROFILE=quick KERAS_BACKEND=tensorflow $(PY) -m pytest tests -q -rs --durations=10

notebooks: install
	$(STAGE) "notebooks (nbval)" env DECONVLAB_PROFILE=quick KERAS_BACKEND=tensorflow $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 notebooks -q

test: lint unit notebooks

# Re-run every notebook in place (CPU, quick profile, TensorFlow) and record provenance in its metadata.
execute: install
	$(STAGE) "execute" env DECONVLAB_PROFILE=quick KERAS_BACKEND=tensorflow $(PY) tools/nbtools.py execute

student: install
	$(PY) tools/nbtools.py student

# The results figure, the model-card table (book/results.md, README.md) from data/weights/*.json; a small README
# screenshot when the browser test has made one.
figures: install
	$(PY) tools/make_figures.py $(if $(wildcard _build/screenshots/landing.png),--screenshot _build/screenshots/landing.png)

# The workshop's timing tables and agendas from the notebooks' measured run times and the H100 measurements.
workshop: install
	$(PY) tools/make_workshop.py

clean:
	rm -rf _build
