# The book's commands. `make book` and `make test` are the two a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two installs into one environment: the site's build packages only (`make book`,
# about 270 MB), or everything that executes, trains and tests (about 1.9 GB).
BOOK_STAMP := $(VENV)/.installed-book
STAMP      := $(VENV)/.installed
PIP        := $(BIN)/python -m pip --disable-pip-version-check
# Where pip takes torch from: empty for pip's own configuration. On Linux, PyPI's
# torch is the CUDA build (several GB); for the CPU build, run for example
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# Execution timeouts stay finite: nbclient can miss the end of a cell that holds
# ipywidgets and would otherwise wait for ever.
TIMEOUT ?= 900
PORT    ?= 8000

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

.PHONY: install install-book book book-zh gettext translations serve execute lab test unit \
        nbval build-strict clean \
        browser student grade instructor student-book data

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: the book needs Python 3.11 or newer as $(PYTHON)" \
	       "(found: $$($(PYTHON) --version 2>&1)); run make PYTHON=python3.11 ..."; \
	  exit 2; }
	$(PYTHON) -m venv $(VENV)

$(BOOK_STAMP): requirements-book.txt | $(BIN)/python
	@echo "Installing the site's build packages (about 270 MB; under a minute on a fast line)"
	$(PIP) install --progress-bar on -r requirements-book.txt
	touch $(BOOK_STAMP)

$(STAMP): requirements.txt requirements-book.txt pyproject.toml | $(BIN)/python
	@echo "Installing torch and everything the chapters and tests use" \
	      "(about 1.9 GB; several minutes)"
	$(if $(TORCH_INDEX),$(PIP) install --index-url $(TORCH_INDEX) "$$(grep '^torch==' requirements.txt)")
	$(PIP) install --progress-bar on -r requirements.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP) $(BOOK_STAMP)

install-book: $(BOOK_STAMP)
install: $(STAMP)

## Build the HTML book into _build/html from the notebooks' stored outputs (no torch needed):
## the English site in _build/html/ and the Chinese one (中文版) in _build/html/zh/.
book: install-book
	$(BIN)/jupyter-book build .
	$(BIN)/python tools/i18n.py html
	@echo "Read it with: make serve (search needs a web server, not file://); 中文版: /zh/"

## Only the Chinese site (_build/html/zh/), from locale/zh_CN/LC_MESSAGES/.
book-zh: install-book
	$(BIN)/python tools/i18n.py html

## Translators: extract the book's messages (_build/gettext/) and update the catalogues
## locale/zh_CN/LC_MESSAGES/**/*.po (new messages arrive empty, changed ones fuzzy).
gettext: install-book
	$(BIN)/python tools/i18n.py gettext

## Translators: how many messages of each catalogue are translated, untranslated, fuzzy.
translations: install-book
	$(BIN)/python tools/i18n.py status

## Serve the built book at http://127.0.0.1:$(PORT)/ (search works there).
serve:
	@test -f _build/html/index.html || $(MAKE) book
	@echo "Serving _build/html at http://127.0.0.1:$(PORT)/ (Ctrl-C stops)"
	$(PYTHON) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

## Re-execute every chapter in place (stores fresh outputs). The stored outputs keep only the
## static twin of each slider explorer: nbclient sometimes misses the end of a cell that
## displays a live widget and waits for its timeout, and a stored live widget has no kernel.
execute: install
	MLKIT_NO_LIVE_WIDGETS=1 $(BIN)/jupyter execute --inplace --timeout=$(TIMEOUT) chapters/*.ipynb

## Open the chapters in JupyterLab: `make lab` opens the book (chapters/, with the
## solutions); students run `make lab EDITION=student`, which opens the student edition in
## $(STUDENT_DIR), writing it first where a notebook is missing (never over their work).
EDITION     ?= book
STUDENT_DIR ?= _build/student
lab: install
ifeq ($(EDITION),student)
	@$(BIN)/python tools/student.py chapters $(STUDENT_DIR) >/dev/null || true
	$(BIN)/jupyter lab $(STUDENT_DIR)/
else ifeq ($(EDITION),book)
	$(BIN)/jupyter lab chapters/
else
	@echo "EDITION must be book or student, got $(EDITION)"; exit 2
endif

## Which data files the book needs and which are here; `make data ACTION=fetch` downloads.
data: install
	$(BIN)/python -m mlkit data $(or $(ACTION),check)

## Everything CI checks: unit tests (the wheel test and the fuzz test among them), strict
## nbval over every chapter, a warning-free build, and the browser test of the site.
test: install unit nbval build-strict browser

unit: install
	$(BIN)/python -m pytest -q tests

nbval: install
	$(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-cell-timeout=$(TIMEOUT) \
	    --nbval-sanitize-with tests/sanitize.cfg chapters/

build-strict: install
	$(BIN)/jupyter-book build -W -n --keep-going .
	$(BIN)/python tools/i18n.py html --strict

## Browser test of the built site: serves _build/html on 127.0.0.1 and drives Debian's
## /usr/bin/chromium headless (apt-get install -y chromium chromium-driver); screenshots go
## to _build/screenshots/.
browser: install build-strict
	MLKIT_BROWSER_TEST=1 $(BIN)/python -m pytest -q tests/browser

## Coursework: the student edition of every chapter (solutions replaced by stubs, outputs
## cleared) in $(OUT) (default _build/student/); a notebook a student changed there is kept,
## not overwritten (the command then says so and fails: choose another OUT).
student: install
	$(BIN)/python tools/student.py chapters $(or $(OUT),$(STUDENT_DIR))

## Coursework: the student site in _build/student-book/src/_build/html: the pages built
## from the student edition (no solution in the pages or the notebook downloads).
student-book: install-book
	$(BIN)/python tools/student_book.py _build/student-book

## Coursework: the instructor edition (solved notebooks, hidden tests, rubrics) in $(OUT)
## (default _build/instructor/).
instructor: install
	$(BIN)/python tools/instructor.py chapters $(or $(OUT),_build/instructor)

## Coursework: grade a folder of submissions (one sub-folder per student) with the hidden
## tests of instructor/tests (or TESTS=folder): each notebook in a fresh kernel, killed after
## GRADE_TIMEOUT seconds, JOBS students at once (default: the cores); CSV rows in OUT
## (default grades.csv). The fixture class: python tests/fixtures/grading/make_class.py F,
## then make grade DIR=F/class TESTS=tests/fixtures/grading/instructor/tests.
GRADE_TIMEOUT ?= 300
grade: install
	@test -n "$(DIR)" || { echo "usage: make grade DIR=folder-of-submissions [OUT=grades.csv]"; exit 2; }
	$(BIN)/python tools/grade.py "$(DIR)" --out "$(or $(OUT),grades.csv)" \
	    --timeout $(GRADE_TIMEOUT) $(if $(JOBS),--jobs $(JOBS)) $(if $(TESTS),--tests "$(TESTS)")

clean:
	rm -rf _build
