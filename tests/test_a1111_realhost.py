"""A real A1111 (or Forge) starts with this repo as an extension: the Model Hub tab is there, its route answers,
and in headless Chromium a LoRA found on the loopback fake CivitAI downloads into models/Lora with its sidecar.
With UPDATE_SCREENSHOTS=1 it refreshes docs/a1111-tab.png.

Runs only when A1111_DIR names a prepared checkout (its requirements installed; see
../shared/reference/a1111.md "Running the real hosts"); A1111_PYTHON picks its interpreter
(default: <A1111_DIR>/venv/bin/python, else this one). Never installs A1111. The browser part also needs
the system Chromium and playwright from pip, like tests/test_ui_browser.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubloader.core.settings import DEFAULTS, SETTINGS_FILE

ROOT = Path(__file__).resolve().parents[1]
A1111_DIR = os.environ.get("A1111_DIR", "")
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = ROOT / "docs" / "a1111-tab.png"
HF_TOKEN, CIVITAI_TOKEN = "hf_realhostSentinel0123456789", "civitaiRealhostSentinel0123456789"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not A1111_DIR, reason="A1111_DIR is not set: no A1111/Forge checkout to start"),
]


def _python() -> str:
    venv = Path(A1111_DIR) / "venv" / "bin" / "python"
    return os.environ.get("A1111_PYTHON") or (str(venv) if venv.is_file() else sys.executable)


def _missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    """A started web UI: its URL, data dir and log."""

    def __init__(self, base: str, data: Path, log: Path) -> None:
        self.base, self.data, self.log = base, data, log

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _start(tmp: Path, hub: Any, extra: list[str]) -> tuple[subprocess.Popen, Host]:
    """Start launch.py on a free loopback port with our repo symlinked as an extension; wait for /config."""
    import requests

    if not (Path(A1111_DIR) / "launch.py").is_file():
        pytest.skip(f"A1111_DIR={A1111_DIR} has no launch.py")
    data = tmp / "data"
    (data / "extensions").mkdir(parents=True)
    (data / "extensions" / "hubloader").symlink_to(ROOT, target_is_directory=True)
    home = tmp / "hubloader-home"
    home.mkdir()
    settings = home / SETTINGS_FILE  # tokens set the way the tab's Settings panel stores them
    settings.write_text(json.dumps({"hf_token": HF_TOKEN, "civitai_token": CIVITAI_TOKEN}), encoding="utf-8")
    settings.chmod(0o600)
    port = _free_port()
    # No --server-name: A1111 counts any --server-name (even 127.0.0.1) as "non-local" and then disables
    # extension write access; the default bind is already 127.0.0.1.
    args = [
        _python(), "launch.py", "--data-dir", str(data), "--skip-torch-cuda-test", "--use-cpu", "all", "--no-half",
        "--no-download-sd-model", "--skip-load-model-at-start", "--skip-version-check", "--api",
        "--port", str(port), "--gradio-allowed-path", A1111_DIR, *extra,
    ]  # fmt: skip
    env = {
        **os.environ,
        "HUBLOADER_HOME": str(home),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",  # its log is how we know it has started
        "HF_ENDPOINT": hub.hf_url,
        "CIVITAI_ENDPOINT": hub.civitai_url,
        "HUBLOADER_ALLOWED_HOSTS": hub.cdn_url,  # the fake's storage host, as a mirror's would be
    }
    host = Host(f"http://127.0.0.1:{port}", data, tmp / "a1111.log")
    with host.log.open("w") as log:
        process = subprocess.Popen(args, cwd=A1111_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    # Gradio serves /config before A1111 has run the app_started callbacks that add our routes; A1111 prints
    # "Startup time" only after them.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if "Startup time:" in host.log.read_text(errors="replace"):
            try:
                if requests.get(f"{host.base}/config", timeout=5).status_code == 200:
                    return process, host
            except requests.RequestException:
                pass
        time.sleep(1)
    _stop(process)
    raise AssertionError(f"A1111 did not finish starting:\n{host.tail()}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def a1111(tmp_path_factory: pytest.TempPathFactory, _fakehub_server: Any) -> Iterator[Host]:
    process, host = _start(tmp_path_factory.mktemp("a1111"), _fakehub_server, [])
    try:
        yield host
    finally:
        _stop(process)


def test_the_model_hub_tab_settings_and_route_exist(a1111: Host) -> None:
    import requests

    config = requests.get(f"{a1111.base}/config", timeout=10).json()
    props = [c.get("props", {}) for c in config["components"]]
    assert any(p.get("elem_id") == "hubloader_query" for p in props), a1111.tail()
    assert any(p.get("label") == "Model Hub" and p.get("elem_id") == "tab_hubloader" for p in props)
    assert requests.get(f"{a1111.base}/hubloader/downloads", timeout=10).json() == {"downloads": []}
    options = requests.get(f"{a1111.base}/sdapi/v1/options", timeout=10)
    # Our Settings section is registered, at the engine's default (the settings file sets only tokens).
    assert options.json()["hubloader_max_connections"] == DEFAULTS["max_connections"]
    # The tokens in our settings file reach neither A1111's options API, nor its page config, nor its config.json.
    for text in (options.text, json.dumps(config), _read(a1111.data / "config.json"), a1111.log.read_text()):
        assert HF_TOKEN not in text and CIVITAI_TOKEN not in text
    assert "Error executing callback" not in a1111.log.read_text(errors="replace"), a1111.tail()


def test_a_lora_downloads_into_models_lora_with_its_sidecar(a1111: Host, fakehub: Any, tmp_path: Path) -> None:
    import requests

    if _missing("playwright") or not Path(CHROMIUM).is_file():
        pytest.skip(f"needs playwright (pip) and {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    fakehub.valid_hf_tokens.add(HF_TOKEN)  # the host was started with these in its settings file
    fakehub.civitai_tokens.add(CIVITAI_TOKEN)
    fakehub.add_civitai_model("Pixel Art XL", trained_words=["pixel art", "8bit"], settings={"strength": 0.8})
    loras = a1111.data / "models" / "Lora"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(a1111.base, timeout=120_000)
        page.locator("#tabs button", has_text="Model Hub").first.click(timeout=60_000)
        page.locator("#hubloader_query textarea, #hubloader_query input").first.fill("pixel")
        page.locator("#hubloader_search").click()
        page.wait_for_function(
            "document.querySelector('#hubloader_search_status')?.innerText.includes(' result')", timeout=60_000
        )
        cards = page.locator("#hubloader_results .hl-card")  # the result cards (faces/cards.py)
        cards.first.wait_for(timeout=30_000)
        cards.first.click()
        page.wait_for_function(
            "document.querySelector('#hubloader_details')?.innerText.includes('Pixel Art XL')", timeout=30_000
        )
        page.locator("#hubloader_download").click()
        page.wait_for_function(
            "document.querySelector('#hubloader_download_status')?.innerText.includes('Queued')", timeout=30_000
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (any(loras.glob("*.json")) and any(loras.glob("*.safetensors"))):
            time.sleep(0.25)
        page.screenshot(path=str(tmp_path / "a1111-tab.png"), full_page=True)
        browser.close()
    (model,) = loras.glob("*.safetensors")
    sidecar = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["activation text"] == "pixel art, 8bit" and sidecar["preferred weight"] == 0.8
    assert not list(loras.glob("*.part"))
    downloads = [seen for seen in fakehub.requests if seen.path.startswith("/api/download/models/")]
    assert downloads and downloads[0].headers.get("Authorization") == f"Bearer {CIVITAI_TOKEN}"  # the token was used
    jobs = requests.get(f"{a1111.base}/hubloader/downloads", timeout=10).json()["downloads"]
    assert [job["state"] for job in jobs] == ["done"], jobs
    # A1111's own LoRA list (the builtin extension's route) sees the file: our refresh after the download ran.
    names = [lora["name"] for lora in requests.get(f"{a1111.base}/sdapi/v1/loras", timeout=10).json()]
    assert model.stem in names, names
    if os.environ.get("UPDATE_SCREENSHOTS"):  # a plain test run leaves the tree clean
        shutil.copyfile(tmp_path / "a1111-tab.png", SCREENSHOT)


def test_an_exposed_host_refuses_downloads(tmp_path: Path, _fakehub_server: Any) -> None:
    """--server-name (even loopback) makes A1111 "non-local": our routes refuse writes, like its Extensions tab."""
    import requests

    process, host = _start(tmp_path, _fakehub_server, ["--server-name", "127.0.0.1"])
    try:
        response = requests.get(f"{host.base}/hubloader/downloads", timeout=10)
        assert response.status_code == 403 and "--enable-insecure-extension-access" in response.json()["error"]
    finally:
        _stop(process)
