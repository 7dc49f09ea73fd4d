# `make run` starts the Model Hub app; `make test` runs the whole suite. Both create their own virtualenvs.
PYTHON ?= python3
VENV := .venv
OLDEST_VENV := .venv-hf-oldest
GRADIO3_VENV := .venv-gradio3
GRADIO4_VENV := .venv-gradio4
# The oldest huggingface_hub we support: Forge pins the 0.26 series.
OLDEST_HF := huggingface_hub==0.26.5
# A1111 1.10's web stack (gradio 3.41.2 / fastapi 0.94 / pydantic 1 / httpx 0.24) with Forge's oldest huggingface_hub.
GRADIO3_PINS := gradio==3.41.2 fastapi==0.94.0 "pydantic<2" httpx==0.24.1 $(OLDEST_HF)
# Forge's web stack (gradio 4.40.0). gradio 4.40 predates pydantic 2.11's schemas (its API info crashes on them),
# huggingface_hub 1.0 (it imports HfFolder) and httpx 0.28, so those are held back; playwright for its browser test.
GRADIO4_PINS := gradio==4.40.0 fastapi==0.112.2 "pydantic<2.11" "httpx<0.28" $(OLDEST_HF)
PY_SOURCES := hubloader nodes scripts __init__.py install.py
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: run test lint test-newest test-hf-oldest test-gradio3 test-gradio4 browser screenshots clean

# The app alone (`make run`): Hubloader with its [ui] extra, pip's progress shown; no test tooling.
$(VENV)/.app-installed: requirements.txt pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing Hubloader and its app into $(VENV) (the first time takes a few minutes)..."
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install --progress-bar on -e ".[ui]"
	touch $@

# The same virtualenv plus the test and lint tooling (`make test`, `make lint`).
$(VENV)/.installed: $(VENV)/.app-installed requirements-dev.txt
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt
	touch $@

$(OLDEST_VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install -q -r requirements-dev.txt "$(OLDEST_HF)"
	touch $@

$(GRADIO3_VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(GRADIO3_VENV)
	$(GRADIO3_VENV)/bin/python -m pip install -q --upgrade pip
	$(GRADIO3_VENV)/bin/python -m pip install -q -r requirements.txt pytest pytest-timeout safetensors numpy pillow playwright $(GRADIO3_PINS)
	touch $@

$(GRADIO4_VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(GRADIO4_VENV)
	$(GRADIO4_VENV)/bin/python -m pip install -q --upgrade pip
	$(GRADIO4_VENV)/bin/python -m pip install -q -r requirements.txt pytest pytest-timeout safetensors numpy pillow playwright $(GRADIO4_PINS)
	touch $@

run: $(VENV)/.app-installed
	$(VENV)/bin/python -m hubloader ui --host $(HOST) --port $(PORT)

# Headless Chromium for the browser tests: Debian's package (never `playwright install`).
# Without root or apt the browser tests are skipped, each printing why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and no root/apt: browser tests will be skipped"; fi; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/vermin -q -t=3.10- --violations --no-tips --eval-annotations $(PY_SOURCES)
	$(VENV)/bin/mypy

test-newest: $(VENV)/.installed browser
	$(VENV)/bin/python -m pytest

test-hf-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -m pytest -m hf

test-gradio3: $(GRADIO3_VENV)/.installed browser
	$(GRADIO3_VENV)/bin/python -m pytest tests/test_ui.py tests/test_ui_browser.py tests/test_a1111_glue.py

# Forge's gradio: the app's handlers and the app in a browser (short: the UI tests only).
test-gradio4: $(GRADIO4_VENV)/.installed browser
	$(GRADIO4_VENV)/bin/python -m pytest tests/test_ui.py tests/test_ui_browser.py

screenshots: $(VENV)/.installed browser
	UPDATE_SCREENSHOTS=1 $(VENV)/bin/python -m pytest tests/test_ui_browser.py

test: lint test-newest test-hf-oldest test-gradio3 test-gradio4

clean:
	rm -rf $(VENV) $(OLDEST_VENV) $(GRADIO3_VENV) $(GRADIO4_VENV) .pytest_cache
