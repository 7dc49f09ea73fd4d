"""``hubloader get`` of a HuggingFace LFS file, end to end as a subprocess against the loopback hub: a killed
download resumes in the next process, free space is judged before the first byte, and a file already
present is found again offline and, pinned to a commit, without a single request."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from hubloader.core.errors import DiskFull
from hubloader.pipeline import fetch
from tests.test_cli import LORA, MiB, hubloader, start

pytestmark = pytest.mark.hf


@pytest.mark.slow
def test_a_killed_hf_get_resumes_in_the_next_process(hub_env, tmp_path: Path):
    # One connection (below the engine's parallel threshold), big enough that 5% covers what a kill may
    # lose: the bytes in memory and those since the last checkpoint (a quarter second each at most).
    size = 30 * MiB
    hub_env.add_hf_repo("big/xl", {"big.safetensors": ("generated", size)})
    hub_env.faults.bandwidth_total = 2 * MiB  # slow enough to stop mid-transfer
    target = ["--to", str(tmp_path / "models")]
    proc = start("get", "big/xl/big.safetensors", *target)
    deadline = time.monotonic() + 60
    while hub_env.bytes_sent.total() < 6 * MiB:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the download never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (tmp_path / "models" / "big.safetensors").exists()

    hub_env.faults.bandwidth_total = None
    result = hubloader("get", "big/xl/big.safetensors", *target)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models" / "big.safetensors").stat().st_size == size
    sent = hub_env.bytes_sent.total()
    assert sent <= size * 1.05, f"{sent} bytes sent for a {size}-byte file"


def _small_disk_under(folder: Path, free: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``shutil.disk_usage`` (which our code asks) reports ``free`` bytes for anything under ``folder``."""
    real = shutil.disk_usage

    def usage(path: str | Path) -> shutil._ntuple_diskusage:  # type: ignore[name-defined]
        seen = real(path)
        if Path(path).resolve().is_relative_to(folder.resolve()):
            return type(seen)(seen.total, seen.total - free, free)
        return seen

    monkeypatch.setattr(shutil, "disk_usage", usage)


@pytest.mark.parametrize("source", ["civitai", "huggingface"])
def test_too_little_free_space_is_refused_before_the_first_byte(
    hub_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
):
    size = 6 * MiB
    if source == "civitai":
        model_id, _ = hub_env.add_civitai_model(
            "Roomy", files=[{"name": "roomy.safetensors", "data": ("generated", size)}]
        )
        ref = f"civitai:{model_id}"
    else:
        hub_env.add_hf_repo("roomy/xl", {"roomy.safetensors": ("generated", size)})
        ref = "roomy/xl/roomy.safetensors"
    _small_disk_under(tmp_path, 1 * MiB, monkeypatch)

    with pytest.raises(DiskFull) as refused:
        fetch(ref, tmp_path / "models")
    assert "roomy" in str(refused.value) and "free" in str(refused.value)
    assert hub_env.bytes_sent.total() == 0


def test_a_file_already_present_is_got_again_offline_and_pinned_without_a_request(hub_env, tmp_path: Path):
    commit = hub_env.add_hf_repo("ink/pinned", {"README.md": b"# ink\n", "ink.safetensors": LORA})
    target = ["--to", str(tmp_path / "models")]
    first = hubloader("get", "ink/pinned/ink.safetensors", *target)
    assert first.returncode == 0, first.stderr
    placed = tmp_path / "models" / "ink.safetensors"
    assert placed.read_bytes() == LORA

    hub_env.requests.clear()
    pinned = hubloader("get", "ink/pinned/ink.safetensors", "--revision", commit, *target)
    assert pinned.returncode == 0, pinned.stderr
    assert "Already present" in pinned.stdout
    assert [(r.method, r.path) for r in hub_env.requests] == []

    offline = hubloader("get", "ink/pinned/ink.safetensors", *target, env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0, offline.stderr
    assert "Already present" in offline.stdout and placed.read_bytes() == LORA
    assert [(r.method, r.path) for r in hub_env.requests] == []
