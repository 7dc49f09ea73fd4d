"""The standalone app in a real browser: `python -m hubloader ui` on loopback against the fake hubs,
searched, a result downloaded, the file and its A1111 sidecar seen on disk, the Library and Settings read.
With UPDATE_SCREENSHOTS=1 it refreshes docs/ui-model-hub.png (the README's picture).

The same file runs under each gradio the app supports (the interpreter running pytest serves the app):
the newest (.venv), 4.40 (Forge, .venv-gradio4) and 3.41 (A1111 1.10, .venv-gradio3).

Needs the system Chromium (`apt-get install -y chromium`) and playwright from pip (never `playwright install`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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


@contextlib.contextmanager
def _app(tmp_path: Path, models: Path):
    """`python -m hubloader ui` on a free loopback port (this interpreter, so this gradio); yields its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "ui.log").open("w")
    command = [sys.executable, "-m", "hubloader", "ui", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--models-dir", str(models)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_until(lambda: server.poll() is not None or _serving(url), 90, "the app to serve")
        assert server.poll() is None, (tmp_path / "ui.log").read_text()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@contextlib.contextmanager
def _browser():
    reason = _skip_reason()
    if reason:
        print(f"SKIPPED browser test: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 1100}, permissions=["clipboard-read", "clipboard-write"]
            )
            yield context.new_page()
        finally:
            browser.close()


def _open_tab(page, name: str) -> None:
    """Click a tab by its name (a role=tab button since gradio 4, a plain button in 3.41)."""
    tab = page.get_by_role("tab", name=name)
    if not tab.count():
        tab = page.locator(".tab-nav button, [role=tablist] button").filter(has_text=re.compile(rf"^\s*{name}\s*$"))
    tab.first.click()


def _text_of(page, elem_id: str, needle: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([id, needle]) => document.querySelector('#' + id)?.innerText.includes(needle)",
        arg=[elem_id, needle],
        timeout=timeout,
    )


def _search(page, query: str) -> None:
    page.locator("#hubloader_query textarea, #hubloader_query input").first.fill(query)
    page.locator("#hubloader_search").click()


@pytest.mark.slow
def test_search_download_and_the_file_lands_with_its_sidecar(hub_env, tmp_path):
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
    with _app(tmp_path, models) as url, _browser() as page:
        page.goto(url)
        _search(page, "pixel")
        _text_of(page, "hubloader_search_status", "3 results", 60_000)
        card = page.locator("#hubloader_results .hl-card").filter(has_text="Pixel Art XL")
        assert "CivitAI" in card.inner_text() and "lora · sdxl" in card.inner_text()
        assert "HF" in page.locator("#hubloader_results .hl-card").filter(has_text="sdxl-pixel-lora").inner_text()
        card.locator("img").wait_for(timeout=30_000)  # the browser loaded the thumbnail from the CDN
        page.wait_for_function(
            "[...document.querySelectorAll('#hubloader_results img')].some(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000,
        )
        card.click()
        _text_of(page, "hubloader_details", "Pixel Art XL")
        page.locator("#hubloader_details_triggers .hl-chip").filter(has_text="8bit").click()
        assert page.evaluate("navigator.clipboard.readText()") == "8bit"
        page.locator("#hubloader_download").click()
        _text_of(page, "hubloader_download_status", "Queued")
        loras = models / "loras"
        _wait_until(lambda: any(loras.glob("*.json")) and any(loras.glob("*.safetensors")), 60, "the file")
        page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
        _open_tab(page, "Downloads")
        page.locator("#hubloader_jobs_refresh").click()  # gradio 3.41 has no Timer; A1111's script clicks it
        _text_of(page, "hubloader_jobs", "done")
        assert page.locator("#hubloader_jobs progress").count() == 1

        page.reload()  # a page opened now lists the download in its Library without a click
        _open_tab(page, "Library")
        _text_of(page, "hubloader_library", "Pixel Art XL")
        cells = "#hubloader_library [role=gridcell]:visible, #hubloader_library td:visible"  # gradio 6; 3.41, 4.40
        cell = page.locator(cells).filter(has_text=re.compile(r"^\s*Pixel Art XL\s*$")).first
        try:
            cell.click(timeout=5_000)
        except Exception:  # gradio 4.40's table keeps re-laying out, so playwright never finds it "stable"
            box = cell.bounding_box()
            assert box, "the library row is not shown"
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        chip = page.locator("#hubloader_library_triggers .hl-chip").filter(has_text=re.compile("^pixel art$"))
        chip.click()
        assert page.evaluate("navigator.clipboard.readText()") == "pixel art"
        _open_tab(page, "Settings")
        _text_of(page, "hubloader_endpoints", "environment variable CIVITAI_ENDPOINT")
    (model,) = loras.glob("*.safetensors")
    sidecar = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["activation text"] == "pixel art, 8bit" and sidecar["preferred weight"] == 0.8
    assert not list(loras.glob("*.part"))
    if os.environ.get("UPDATE_SCREENSHOTS"):  # the README's picture; a plain test run leaves the tree clean
        shutil.copyfile(tmp_path / "search.png", SCREENSHOT)


@pytest.mark.slow
def test_results_arrive_while_preview_hosts_hang_or_refuse(hub_env, tmp_path):
    """gradio 3.41's Gallery HEADs every preview URL on the server, without a timeout: a preview host that never
    answers would hang the search, one that refuses would fail it. The cards leave previews to the browser."""
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # accepts connections (the kernel's backlog) and never answers
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        for name, port in (("Hanging Preview", silent.getsockname()[1]), ("Refused Preview", closed.getsockname()[1])):
            image = {"url": f"http://127.0.0.1:{port}/x/width=512/a.jpeg", "type": "image", "nsfwLevel": 1}
            hub_env.add_civitai_model(name, images=[{**image, "width": 64, "height": 64, "hash": "U0", "meta": None}])
        hub_env.add_civitai_model("Served Preview")
        with _app(tmp_path, tmp_path / "models") as url, _browser() as page:
            page.goto(url)
            _search(page, "preview")
            # A server that waited on the silent host would never get here: this wait is the test's timeout.
            _text_of(page, "hubloader_search_status", "3 results", 30_000)
            texts = page.locator("#hubloader_results .hl-card").all_inner_texts()
            assert sorted(t.split("\n")[0] for t in texts) == ["CivitAI"] * 3
            assert all(any(n in t for t in texts) for n in ("Hanging Preview", "Refused Preview", "Served Preview"))
            assert "⚠️" not in page.locator("#hubloader_search_status").first.inner_text()
            # The refused preview became a "no preview" tile; the page still answers a click on its card.
            page.wait_for_selector("#hubloader_results .hl-broken", timeout=30_000)
            page.locator("#hubloader_results .hl-card").filter(has_text="Refused Preview").click()
            _text_of(page, "hubloader_details", "Refused Preview")


def _refresh_until(page, script: str, what: str, timeout: float = 60) -> None:
    """Click the queue's Refresh until ``script`` holds (gradio 3.41 has no Timer; A1111's script clicks it there)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.locator("#hubloader_jobs_refresh").click()
        page.wait_for_timeout(500)


@pytest.mark.slow
def test_a_download_is_cancelled_and_resumed_from_its_row(hub_env, tmp_path):
    hub_env.add_civitai_model("Big Pixel", files=[{"name": "big.safetensors", "data": ("generated", 4 << 20)}])
    hub_env.faults.update(bandwidth_per_connection=256 << 10)
    models = tmp_path / "models"
    rows = "document.querySelectorAll('#hubloader_jobs tr[data-job]')"
    with _app(tmp_path, models) as url, _browser() as page:
        page.goto(url)
        _search(page, "big pixel")
        _text_of(page, "hubloader_search_status", "1 result", 60_000)
        page.locator("#hubloader_results .hl-card").first.click()
        _text_of(page, "hubloader_details", "Big Pixel")
        page.locator("#hubloader_download").click()
        _text_of(page, "hubloader_download_status", "Queued")
        _open_tab(page, "Downloads")
        _refresh_until(page, f"[...{rows}].some(r => (r.querySelector('progress')?.value || 0) > 0)", "progress")
        page.locator("#hubloader_jobs button.hl-cancel").click()
        _text_of(page, "hubloader_jobs_status", "Cancelling")
        _refresh_until(page, f"{rows}[0]?.dataset.state === 'cancelled'", "the cancelled row")
        hub_env.faults.update(bandwidth_per_connection=None)
        before = len(hub_env.requests)
        resume = page.locator("#hubloader_jobs button.hl-retry")
        assert resume.inner_text() == "Resume"
        resume.click()
        _text_of(page, "hubloader_jobs_status", "resumes where it stopped")
        _refresh_until(page, f"{rows}[0]?.dataset.state === 'done'", "the resumed download")
    (model,) = (models / "loras").glob("*.safetensors")
    assert model.stat().st_size == 4 << 20
    fetched = [r.headers.get("Range", "") for r in list(hub_env.requests)[before:] if r.path.startswith("/storage/")]
    assert fetched and not any(r in ("", "bytes=0-") or r.startswith("bytes=0-") for r in fetched), fetched  # resumed
