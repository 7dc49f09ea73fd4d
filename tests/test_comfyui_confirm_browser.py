"""The missing-models dialog in a real ComfyUI page (headless Chromium): a workflow naming a file on a host outside
HuggingFace, CivitAI and the configured ones shows an unticked box for that host; only once the user ticks it does
the download go, as ``confirm_hosts`` from this machine. Skipped like tests/test_comfyui_realhost.py."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.fakehub.modelfiles import safetensors_bytes
from tests.test_comfyui_realhost import CHROMIUM, Comfy, comfy, pytestmark  # noqa: F401  (comfy: the fixture)
from tests.workflow_samples import node, ui_workflow


def test_the_dialog_downloads_from_a_foreign_host_only_once_ticked(comfy: Comfy):  # noqa: F811
    playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright (pip) is not installed")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    data = safetensors_bytes({"lora_up.weight": ("F16", [4, 4])}, seed=31)
    comfy.hub.add_file("/files/ticked.safetensors", data)
    host = f"localhost:{comfy.hub.ports['cdn']}"  # the fake's CDN under a name nobody configured
    models = [{"name": "ticked.safetensors", "url": f"http://{host}/files/ticked.safetensors", "directory": "loras",
               "hash": hashlib.sha256(data).hexdigest(), "hash_type": "SHA256"}]  # fmt: skip
    workflow = ui_workflow([node(1, "LoraLoader", ["ticked.safetensors", 1, 1], models=models)])
    target = comfy.base / "models" / "loras" / "ticked.safetensors"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(comfy.url)
        page.locator(".pi-cloud-download").first.wait_for(timeout=60000)
        dialog = page.locator(".hubloader-dialog")
        try:  # the default workflow's missing checkpoint
            dialog.wait_for(timeout=15000)
            dialog.get_by_text("Close").click()
        except playwright_api.TimeoutError:
            pass
        page.evaluate("workflow => window.app.loadGraphData(workflow)", workflow)
        box = page.locator(".hubloader-dialog input[type=checkbox]")
        box.wait_for(timeout=30000)
        assert host in page.locator(".hubloader-dialog").inner_text() and not box.is_checked()
        # The install plan beside the report: where the file goes and what it needs (until ticked, the host's
        # confirmation: the plan counts it among what cannot be fetched yet).
        page.locator(".hubloader-plan", has_text="to fetch").wait_for(timeout=30000)
        text = page.locator(".hubloader-dialog").inner_text()
        assert str(Path("models") / "loras" / "ticked.safetensors") in text, text
        assert "your confirmation" in text and "1 cannot be fetched now" in text, text
        box.check()
        page.locator(".hubloader-dialog button", has_text="Download").click()
        page.locator(".hubloader-dialog").wait_for(state="detached", timeout=30000)  # queued: the dialog closes
        done = (
            "async () => (await (await fetch('/hubloader/downloads')).json()).downloads.some(j => j.state === 'done')"
        )
        page.wait_for_function(done, timeout=60000, polling=500)
        browser.close()
    assert target.read_bytes() == data
