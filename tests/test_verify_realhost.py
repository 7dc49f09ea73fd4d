"""Against a real ComfyUI (COMFYUI_DIR; skipped otherwise): with "verify models before a prompt runs" on in ComfyUI's
settings, a prompt whose workflow pins a LoRA's SHA256 runs while the file is unchanged and is stopped, with the
file and both hashes in ComfyUI's answer, once the LoRA changed."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes
from tests.test_comfyui_realhost import Comfy, comfy, pytestmark  # noqa: F401  (the fixture and the skip)

LORA = safetensors_bytes(kohya_lora("sd15"), seed=81)


def _prompt(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/prompt", json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_changed_lora_stops_the_prompt(comfy: Comfy):  # noqa: F811
    settings = comfy.base / "user" / "default" / "comfy.settings.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "Hubloader.VerifyModelsBeforePrompt": True}))
    lora = comfy.base / "models" / "loras" / "verified.safetensors"
    lora.parent.mkdir(parents=True, exist_ok=True)
    lora.write_bytes(LORA)
    pinned = hashlib.sha256(LORA).hexdigest()
    workflow = {
        "nodes": [
            {"id": 1, "type": "LoraLoader", "mode": 0, "widgets_values": ["verified.safetensors", 1, 1],
             "properties": {"models": [{"name": "verified.safetensors", "directory": "loras", "hash": pinned,
                                        "hash_type": "SHA256"}]}},
        ]
    }  # fmt: skip
    body = {
        "prompt": {"1": {"class_type": "PreviewAny", "inputs": {"source": "verified"}}},
        "extra_data": {"extra_pnginfo": {"workflow": workflow}},
    }
    status, answer = _prompt(comfy.url, body)
    assert status == 200 and "prompt_id" in answer, answer

    lora.write_bytes(LORA[:-1] + b"\x03")
    actual = hashlib.sha256(lora.read_bytes()).hexdigest()
    status, answer = _prompt(comfy.url, body)
    assert status == 400, answer
    details = answer["error"]["details"]
    assert "verified.safetensors" in details and pinned in details and actual in details
