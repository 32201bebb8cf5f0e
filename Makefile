# The book's commands. `make book` and `make test` are the two a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Execution timeouts stay finite: nbclient can miss the end of a cell that holds
# ipywidgets and would otherwise wait for ever.
TIMEOUT ?= 900

# Omniglot: $MLKIT_DATA if set, else the shared offline copy beside the checkout when there
# is one, else mlkit's default (~/.cache/mlkit, downloaded on first use).
ifeq ($(strip $(MLKIT_DATA)),)
  ifneq ($(wildcard ../shared/data/omniglot),)
    MLKIT_DATA := ../shared/data
  endif
endif
ifneq ($(strip $(MLKIT_DATA)),)
  # absolute, because notebooks run with chapters/ as their working directory
  export MLKIT_DATA := $(abspath $(MLKIT_DATA))
endif

.PHONY: install book execute lab test unit nbval build-strict clean browser student grade

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Build the HTML book into _build/html from the notebooks' stored outputs.
book: install
	$(BIN)/jupyter-book build .

## Re-execute every chapter in place (stores fresh outputs). The stored outputs keep only the
## static twin of each slider explorer: nbclient sometimes misses the end of a cell that
## displays a live widget and waits for its timeout, and a stored live widget has no kernel.
execute: install
	MLKIT_NO_LIVE_WIDGETS=1 $(BIN)/jupyter execute --inplace --timeout=$(TIMEOUT) chapters/*.ipynb

## Open the chapters in JupyterLab.
lab: install
	$(BIN)/jupyter lab chapters/

## Everything CI checks: unit tests, strict nbval over every chapter, a warning-free build.
test: install unit nbval build-strict browser

unit: install
	$(BIN)/python -m pytest -q tests

nbval: install
	$(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-cell-timeout=$(TIMEOUT) \
	    --nbval-sanitize-with tests/sanitize.cfg chapters/

build-strict: install
	$(BIN)/jupyter-book build -W -n --keep-going .

## Browser test of the built site: serves _build/html on 127.0.0.1 and drives Debian's
## /usr/bin/chromium headless (apt-get install -y chromium chromium-driver); screenshots go
## to _build/screenshots/.
browser: install build-strict
	MLKIT_BROWSER_TEST=1 $(BIN)/python -m pytest -q tests/browser

## Coursework: the student edition of every chapter (solution cells emptied) in _build/student/.
student: install
	$(BIN)/python tools/student.py chapters _build/student

## Coursework: execute a folder of submissions (one sub-folder per student) and print scores.
grade: install
	@test -n "$(DIR)" || { echo "usage: make grade DIR=folder-of-submissions"; exit 2; }
	$(BIN)/python tools/grade.py "$(DIR)" --ref chapters --timeout $(TIMEOUT)

clean:
	rm -rf _build
