"""A real A1111/Forge starts with this repo as an extension and shows the Model Hub tab and its route.

Runs only when A1111_DIR names a prepared checkout (its requirements installed; see
../shared/reference/a1111.md "Running the real hosts"); A1111_PYTHON picks its interpreter
(default: <A1111_DIR>/venv/bin/python, else this one). Never installs A1111.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
A1111_DIR = os.environ.get("A1111_DIR", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not A1111_DIR, reason="A1111_DIR is not set: no A1111/Forge checkout to start"),
]


def _python() -> str:
    venv = Path(A1111_DIR) / "venv" / "bin" / "python"
    return os.environ.get("A1111_PYTHON") or (str(venv) if venv.is_file() else sys.executable)


def test_a1111_starts_with_the_model_hub_tab(tmp_path):
    import requests

    if not (Path(A1111_DIR) / "launch.py").is_file():
        pytest.skip(f"A1111_DIR={A1111_DIR} has no launch.py")
    data = tmp_path / "data"
    (data / "extensions").mkdir(parents=True)
    (data / "extensions" / "hubloader").symlink_to(ROOT, target_is_directory=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        _python(), "launch.py", "--data-dir", str(data), "--skip-torch-cuda-test", "--use-cpu", "all", "--no-half",
        "--no-download-sd-model", "--skip-load-model-at-start", "--skip-version-check", "--api",
        "--server-name", "127.0.0.1", "--port", str(port), "--gradio-allowed-path", A1111_DIR,
    ]  # fmt: skip
    env = {**os.environ, "HUBLOADER_HOME": str(tmp_path / "hubloader-home"), "GRADIO_ANALYTICS_ENABLED": "False"}
    log_path = tmp_path / "a1111.log"
    with log_path.open("w") as log:
        host = subprocess.Popen(args, cwd=A1111_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 300
            config = None
            while time.monotonic() < deadline and host.poll() is None:
                try:
                    response = requests.get(f"{base}/config", timeout=5)
                    if response.status_code == 200:
                        config = response.json()
                        break
                except requests.RequestException:
                    pass
                time.sleep(1)
            assert config is not None, log_path.read_text()[-4000:]
            props = [c.get("props", {}) for c in config["components"]]
            assert any(p.get("elem_id") == "hubloader_query" for p in props)
            assert any(p.get("label") == "Model Hub" or p.get("elem_id") == "tab_hubloader" for p in props)
            assert requests.get(f"{base}/hubloader/downloads", timeout=10).json() == {"downloads": []}
            options = requests.get(f"{base}/sdapi/v1/options", timeout=10).json()
            assert not any("token" in key and options[key] for key in options if key.startswith("hubloader"))
        finally:
            host.terminate()
            try:
                host.wait(timeout=60)
            except subprocess.TimeoutExpired:
                host.kill()
