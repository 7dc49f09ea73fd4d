"""``hubloader get`` of a HuggingFace LFS file, end to end as a subprocess against the loopback hub: a killed
download resumes in the next process, free space is judged before the first byte, and a file already
present is found again offline and, pinned to a commit, without a single request."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.test_cli import MiB, hubloader, start

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
