# `make run` starts Hubloader; `make test` runs the whole suite. Both create their own virtualenvs.
PYTHON ?= python3
VENV := .venv
OLDEST_VENV := .venv-hf-oldest
# The oldest huggingface_hub we support: Forge pins the 0.26 series.
OLDEST_HF := huggingface_hub==0.26.5
PY_SOURCES := hubloader nodes scripts __init__.py install.py

.PHONY: run test lint test-newest test-hf-oldest clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt -e .
	touch $@

$(OLDEST_VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install -q -r requirements-dev.txt "$(OLDEST_HF)"
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/python -m hubloader search "sdxl lora" --limit 10

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/vermin -q -t=3.10- --violations --no-tips --eval-annotations $(PY_SOURCES)

test-newest: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

test-hf-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -m pytest -m hf

test: lint test-newest test-hf-oldest

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .pytest_cache
