"""What the command line prints when things go wrong or take long: a dead network is one line without retries,
each warning once, the same exit code for the same failure in every command, progress bars that end cleanly,
and ``list`` with ids, trigger words and weights."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from hubloader.engine.progress import DownloadProgress
from hubloader.faces.cli.progress import Progress
from tests.test_cli import LORA, hubloader, json_lines, one_error_line


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_with_the_network_down_is_one_line_naming_both_hubs_without_retries():
    dead = f"http://127.0.0.1:{closed_port()}"
    result = hubloader("search", "ink", env={"HF_ENDPOINT": dead, "CIVITAI_ENDPOINT": dead})
    assert result.returncode == 6
    line = one_error_line(result)  # on main: 12 retry warnings (each twice) before the error, 23 s
    assert "Retry" not in result.stderr
    assert "HF_ENDPOINT" in line and "CIVITAI_ENDPOINT" in line and "connection refused" in line
    assert "CivitAI" in line and dead in line


def test_civitai_does_not_retry_a_refused_connection(monkeypatch: pytest.MonkeyPatch):
    from hubloader.core.errors import NetworkError
    from hubloader.sources import civitai

    monkeypatch.setenv("CIVITAI_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    waits: list[float] = []
    monkeypatch.setattr(civitai.time, "sleep", waits.append)
    with pytest.raises(NetworkError, match="connection refused"):
        civitai.CivitAIService().search_models(query="ink")
    assert waits == []  # main waited 1 + 2 + 4 s between three more attempts


def test_a_failing_hub_is_one_warning_printed_once(hub_env):
    model_id, version_id = hub_env.add_civitai_model("Once Ink")
    dead = f"http://127.0.0.1:{closed_port()}"
    result = hubloader("search", "Once Ink", env={"HF_ENDPOINT": dead})
    assert result.returncode == 0, result.stderr
    assert f"civitai:{model_id}@{version_id}" in result.stdout
    (warning,) = result.stderr.strip().splitlines()  # on main: the same warning twice (logged and printed)
    assert warning.startswith("hubloader: warning: huggingface search failed") and "connection refused" in warning


def test_lock_and_resolve_exit_alike_for_a_model_nobody_can_find(hub_env, tmp_path: Path):
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"1": {"class_type": "VAELoader", "inputs": {"vae_name": "nowhere.safetensors"}}}))
    folder = ["--models-dir", str(tmp_path / "models")]
    resolved = hubloader("resolve", str(workflow), *folder)
    locked = hubloader("lock", str(workflow), *folder)
    assert resolved.returncode == locked.returncode == 3, locked.stderr  # lock exited 1 on main
    assert "nowhere.safetensors" in one_error_line(locked)


def test_list_shows_id_trigger_words_and_weight(hub_env, tmp_path: Path):
    model_id, version_id = hub_env.add_civitai_model(
        "Listed Ink",
        files=[{"name": "listed.safetensors", "data": LORA}],
        trained_words=["listedink", "brush"],
        settings={"strength": 0.65},
    )
    assert hubloader("get", f"civitai:{model_id}", "--models-dir", str(tmp_path / "m")).returncode == 0
    table = hubloader("list")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert "ID" in header.split() and "TRIGGER WORDS" in header and "WEIGHT" in header
    assert f"civitai:{model_id}@{version_id}" in row and "listedink, brush" in row and "0.65" in row
    assert hubloader("list", "-q").stdout == f"civitai:{model_id}@{version_id}\n"
    (record,) = json_lines(hubloader("list", "--json").stdout)
    assert record["trigger_words"] == ["listedink", "brush"] and record["recommended_weight"] == 0.65


def _event(state: str, done: int, total: int = 100, name: str = "f.safetensors") -> DownloadProgress:
    return DownloadProgress(path=Path(name), url="", state=state, bytes_done=done, total=total)


def test_an_interrupted_bar_is_not_painted_failed(capsys: pytest.CaptureFixture[str]):
    bars = Progress(terminal=True)
    update = bars.file("f.safetensors")
    update(_event("downloading", 40))
    update(_event("failed", 40))  # what the engine reports as Ctrl-C unwinds it
    bars.close()
    drawn = capsys.readouterr().err
    assert "f.safetensors" in drawn and "failed" not in drawn


def test_several_files_get_an_overall_bar_and_plain_lines_off_terminal(capsys: pytest.CaptureFixture[str]):
    bars = Progress(2, 200, terminal=True)
    for name in ("a.safetensors", "b.safetensors"):
        update = bars.file(name)
        update(_event("downloading", 50, name=name))
        update(_event("done", 100, name=name))
    bars.close()
    drawn = capsys.readouterr().err
    assert "2 files" in drawn and "200/200" in drawn

    plain = Progress(2, terminal=False)
    for name in ("a.safetensors", "b.safetensors"):
        update = plain.file(name)
        for done in (0, 30, 60, 100):
            update(_event("downloading" if done < 100 else "done", done, name=name))
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "hubloader: [1/2] downloaded a.safetensors (100 B)",
        "hubloader: [2/2] downloaded b.safetensors (100 B)",
    ]


@pytest.mark.hf
def test_resolve_download_off_terminal_prints_a_line_per_file_and_a_clean_table(hub_env, tmp_path: Path):
    from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes
    from tests.workflow_samples import node, ui_workflow

    other = safetensors_bytes(kohya_lora("sdxl"), seed=81)
    hub_env.add_hf_repo("ink/pair", {"one.safetensors": LORA, "two.safetensors": other}, tags=["lora"])
    base = "https://huggingface.co/ink/pair/resolve/main"
    workflow = tmp_path / "wf.json"
    workflow.write_text(
        json.dumps(
            ui_workflow(
                [
                    node(1, "LoraLoader", ["one.safetensors", 1.0, 1.0]),
                    node(2, "LoraLoader", ["two.safetensors", 1.0, 1.0]),
                ],
                models=[
                    {"name": n, "url": f"{base}/{n}", "directory": "loras"}
                    for n in ("one.safetensors", "two.safetensors")
                ],
            )
        )
    )
    result = hubloader("resolve", str(workflow), "--download", "--models-dir", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\r" not in result.stdout
    for name in ("one.safetensors", "two.safetensors"):
        assert f"downloaded {name}" in result.stderr
    header, *rows, counts = result.stdout.splitlines()
    assert header.split() == ["STATUS", "KIND", "MODEL", "DETAIL"] and len(rows) == 2
    assert all(row.startswith("fetched") for row in rows) and counts == "2 model(s): 2 fetched"


@pytest.mark.hf
@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_on_a_terminal_bars_end_before_the_result_lines(hub_env, tmp_path: Path):
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes
    from tests.test_cli import REPO_ROOT

    other = safetensors_bytes(kohya_lora("sdxl"), seed=91)
    hub_env.add_hf_repo("ink/tty", {"one.safetensors": LORA, "two.safetensors": other}, tags=["lora"])
    leader, follower = pty.openpty()  # stdout and stderr on one terminal, as a user sees them
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column window
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubloader", "get", "ink/tty", "--include", "*.safetensors"]
        + ["--models-dir", str(tmp_path / "m")],
        cwd=REPO_ROOT,
        stdout=follower,
        stderr=follower,
        env=dict(os.environ),
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=90) == 0
    os.close(leader)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "2 files" in screen, repr(screen)  # the overall bar was drawn
    tail = screen[screen.index("Saved: ") :]
    lines = tail.replace("\r\n", "\n").splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"Saved: {tmp_path / 'm' / 'loras' / 'one.safetensors'}",
        f"Saved: {tmp_path / 'm' / 'loras' / 'two.safetensors'}",
    ]  # nothing of a bar between or after the result lines
