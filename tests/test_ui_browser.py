"""The standalone app in a real browser: `python -m hubloader ui` on loopback against the fake hubs,
searched, a result downloaded, the file and its A1111 sidecar seen on disk.
With UPDATE_SCREENSHOTS=1 it refreshes docs/ui-model-hub.png (the README's picture).

Needs the system Chromium (`apt-get install -y chromium`) and playwright from pip (never `playwright install`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = ROOT / "docs" / "ui-model-hub.png"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _skip_reason() -> str | None:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        return "gradio is not installed (pip install -r requirements-dev.txt)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _serving(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.slow
def test_search_download_and_the_file_lands_with_its_sidecar(hub_env, tmp_path):
    reason = _skip_reason()
    if reason:
        print(f"SKIPPED browser test: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from tests.fakehub import modelfiles as mf

    hub_env.add_civitai_model(
        "Pixel Art XL", trained_words=["pixel art", "8bit"], settings={"strength": 0.8}, stats={"downloadCount": 5000}
    )
    hub_env.add_civitai_model("Pixel Checkpoint", type="Checkpoint", base_model="SD 1.5")
    hub_env.add_hf_repo(
        "demo/sdxl-pixel-lora",
        {"pixel-art.safetensors": mf.safetensors_bytes(mf.kohya_lora("sdxl"), seed=1)},
        tags=["lora", "base_model:stabilityai/stable-diffusion-xl-base-1.0"],
        downloads=1200,
        likes=40,
    )
    models = tmp_path / "models"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "ui.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubloader",
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--models-dir",
            str(models),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until(lambda: server.poll() is not None or _serving(url), 90, "the app to serve")
        assert server.poll() is None, (tmp_path / "ui.log").read_text()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(url)
            page.locator("#hubloader_query textarea, #hubloader_query input").first.fill("pixel")
            page.locator("#hubloader_search").click()
            page.wait_for_function(
                "document.querySelector('#hubloader_search_status')?.innerText.includes('results')", timeout=60_000
            )
            page.locator("#hubloader_results img").first.wait_for(timeout=30_000)
            page.get_by_text("Pixel Art XL").first.wait_for(timeout=30_000)
            cards = page.locator("#hubloader_results button:has(img)")
            index = next(i for i in range(cards.count()) if "Pixel Art XL" in (cards.nth(i).inner_text() or ""))
            cards.nth(index).click()
            page.wait_for_function(
                "document.querySelector('#hubloader_details')?.innerText.includes('Pixel Art XL')", timeout=30_000
            )
            page.locator("#hubloader_download").click()
            page.wait_for_function(
                "document.querySelector('#hubloader_download_status')?.innerText.includes('Queued')", timeout=30_000
            )
            loras = models / "loras"
            _wait_until(lambda: any(loras.glob("*.json")) and any(loras.glob("*.safetensors")), 60, "the file")
            page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
            page.get_by_role("tab", name="Downloads").click()
            page.wait_for_function(
                "document.querySelector('#hubloader_jobs')?.innerText.includes('done')", timeout=30_000
            )
            browser.close()
        (model,) = loras.glob("*.safetensors")
        sidecar = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
        assert sidecar["activation text"] == "pixel art, 8bit" and sidecar["preferred weight"] == 0.8
        assert not list(loras.glob("*.part"))
        if os.environ.get("UPDATE_SCREENSHOTS"):  # the README's picture; a plain test run leaves the tree clean
            shutil.copyfile(tmp_path / "search.png", SCREENSHOT)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
