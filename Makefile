# `make book` builds the HTML into _build/html; `make test` runs every check CI runs.
# Both create .venv (Python 3.11-3.12: the pinned NumPy, SciPy and Keras need 3.11) and install requirements.txt into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAGE := tools/stage
# The benchmark sets: a local copy when one sits beside the repository (as in CI), else download/fallback.
DECONVLAB_DATA ?= $(shell test -d ../shared/datasets && cd ../shared/datasets && pwd)
ifneq ($(DECONVLAB_DATA),)
export DECONVLAB_DATA
endif

.PHONY: install book test lint unit unit-jax notebooks notebooks-offline sync execute check student repository figures workshop clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(STAGE) "install" sh -c '$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -r requirements.txt'
	touch $@

install: $(VENV)/.installed

book: install
	$(STAGE) "book" $(VENV)/bin/jupyter-book build . --warningiserror --keep-going

lint: install
	$(STAGE) "lint" $(VENV)/bin/ruff check src tests tools benchmarks notebooks conftest.py

# The test stages run two processes at once (pytest-xdist; nbval and the offline pass one chapter per process): one
# TensorFlow process leaves about a third of two cores idle. `--dist loadfile`/`loadscope` keep a file's tests, and
# a notebook's cells, in one process.
XDIST := -n 2 --dist loadfile

unit: install
	$(STAGE) "unit tests" env DECONVLAB_PROFILE=quick KERAS_BACKEND=tensorflow $(PY) -m pytest tests -q -rs --durations=10 $(XDIST)

# The tests marked `backends` (models, layers, training, gradients, tiling, weights, evaluation) once more on
# JAX, so that chapter or package work cannot break that backend unnoticed; `slow` ones are left out. They compile
# many small XLA programs and time none: XLA's CPU backend optimisation off makes the stage about a third faster.
unit-jax: install
	$(STAGE) "unit tests on JAX (marked backends)" env DECONVLAB_PROFILE=quick KERAS_BACKEND=jax JAX_PLATFORMS=cpu \
	  XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true" \
	  $(PY) -m pytest tests -m "backends and not slow" -q -rs --durations=5 $(XDIST)

notebooks: install
	$(STAGE) "notebooks (nbval)" env DECONVLAB_PROFILE=quick KERAS_BACKEND=tensorflow $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 notebooks -q -n 2 --dist loadscope

# Every chapter once more, as a Colab or new user runs it: in a fresh venv made with only `pip install -e ".[book]"`,
# with the network blocked (a new network namespace) and no local data copy, so the offline fallback to
# scikit-image's photographs must carry each one. Outputs are not compared; unexpected errors fail. The `smoke`
# profile runs every cell with a few training steps: nbval has just trained the quick profile's runs.
BOOK_VENV ?= .venv-book
$(BOOK_VENV)/.installed: pyproject.toml
	$(STAGE) "install .[book] into a fresh venv" sh -c 'rm -rf $(BOOK_VENV) && $(PYTHON) -m venv $(BOOK_VENV) && \
	  $(BOOK_VENV)/bin/python -m pip install -q --upgrade pip && $(BOOK_VENV)/bin/python -m pip install -q -e ".[book]"'
	touch $@

# Blocking the network needs an unprivileged user namespace (Linux): where there is none (macOS, some hardened
# kernels) the stage is skipped with a note, except in CI (CI set), where it must run.
notebooks-offline: $(BOOK_VENV)/.installed
	@if unshare -rn sh -c 'ip link set lo up' 2>/dev/null || [ -n "$$CI" ]; then \
	  $(STAGE) "notebooks offline (.[book] venv)" env -u DECONVLAB_DATA DECONVLAB_CACHE="$$(mktemp -d)" \
	    DECONVLAB_PROFILE=smoke KERAS_BACKEND=tensorflow \
	    unshare -rn sh -c 'ip link set lo up && $(BOOK_VENV)/bin/python tools/nbtools.py offline'; \
	else echo "notebooks-offline: skipped: 'unshare -rn' (a Linux user namespace) is not available here"; fi

test: lint unit unit-jax notebooks notebooks-offline

# The chapters' sources are notebooks/NN_name.md (MyST Markdown); `sync` updates each .ipynb from its .md keeping
# outputs, `execute` syncs and then re-runs every chapter in place (CPU, quick profile, TensorFlow), recording
# provenance; `check` lists drifted pairs and stale outputs (tests/test_notebooks.py fails on them too).
sync: install
	$(PY) tools/nbtools.py sync

execute: install
	$(STAGE) "execute" env DECONVLAB_PROFILE=quick KERAS_BACKEND=tensorflow $(PY) tools/nbtools.py execute

check: install
	$(PY) tools/nbtools.py check

student: install
	$(PY) tools/nbtools.py student

# repository.url of _config.yml, written into the Colab cells, CITATION.cff, the BibTeX entry, README, workshop page.
repository: install
	$(PY) tools/repository.py

# The results figure, the model-card table (book/results.md, README.md) from data/weights/*.json; a small README
# screenshot when the browser test has made one.
figures: install
	$(PY) tools/make_figures.py $(if $(wildcard _build/screenshots/landing.png),--screenshot _build/screenshots/landing.png)

# The workshop's timing tables and agendas from the notebooks' measured run times and the H200 measurements.
workshop: install
	$(PY) tools/make_workshop.py

clean:
	rm -rf _build
