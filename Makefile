# The README's two commands: `make run` and `make test`. Everything else here serves them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin
# A local checkout runs with the development defaults (see .env.example for production values).
export DJANGO_DEBUG ?= true

.PHONY: run test install clean-venv

# Re-install only when a requirements file changed since the last install. The wheels in
# requirements-nodeps.txt go in without their declared dependencies (the file says why).
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt \
		-c constraints.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python scripts/run_dev.py --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py check
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)
