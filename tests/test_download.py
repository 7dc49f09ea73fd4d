"""The download engine against the loopback fake hub: real HTTP, real files, faults switched on the server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hubloader.core import errors
from hubloader.core.settings import Secret, save_settings
from hubloader.engine import download, origin
from hubloader.engine.download import DownloadProgress, TqdmProgress, adownload_file, download_file, lock_path
from hubloader.engine.ratelimit import MAX_RETRY_AFTER, MAX_RETRY_WAIT
from hubloader.faces import advice
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes
from tests.fakehub.storage import GeneratedBlob, StoredObject

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def leftovers(dest: Path) -> list[str]:
    """Every file beside ``dest``: a download leaves nothing there but the model (or its ``.part``), no lock."""
    return sorted(p.name for p in dest.parent.iterdir() if p.is_file())


def sent(hub, url: str) -> int:
    path = url.split("?")[0].split(":", 2)[-1].split("/", 1)[-1]
    return hub.bytes_sent["/" + path]


def cancel_after(n: int, events: list[DownloadProgress] | None = None) -> tuple[threading.Event, callable]:
    """A cancel event set by the progress callback once ``n`` bytes are on disk."""
    stop = threading.Event()

    def on_progress(event: DownloadProgress) -> None:
        if events is not None:
            events.append(event)
        if event.bytes_done >= n:
            stop.set()

    return stop, on_progress


def partial(url: str, dest: Path, n: int, **kwargs) -> None:
    """Download ``url`` until ``n`` bytes are in, then cancel (keeps the .part)."""
    stop, on_progress = cancel_after(n)
    with pytest.raises(errors.Cancelled):
        download_file(url, dest, cancel=stop, progress=on_progress, expect="any", **kwargs)
    assert (dest.parent / (dest.name + ".part")).exists() and not dest.exists()


# --- the plain path ------------------------------------------------------------------------------


def test_small_model_is_verified_and_placed_atomically(fakehub, tmp_path):
    data = safetensors_bytes(kohya_lora(), seed=1)
    url = fakehub.add_file("models/lora.safetensors", data)
    sha = fakehub.blob(url).sha256
    dest = tmp_path / "loras" / "lora.safetensors"

    result = download_file(url, dest, expected_sha256=sha, expected_size=len(data))

    assert dest.read_bytes() == data
    assert (result.path, result.sha256, result.size_bytes, result.reused) == (dest, sha, len(data), False)
    assert leftovers(dest) == ["lora.safetensors"]
    gets = [r for r in fakehub.requests if r.path == "/models/lora.safetensors"]
    assert len(gets) == 1  # small file: one stream


def test_large_file_uses_several_ranged_connections_within_the_service_cap(fakehub, tmp_path):
    url = fakehub.add_file("big.bin", size=64 * MiB)
    fakehub.faults.update(bandwidth_per_connection=16 * MiB)
    events: list[DownloadProgress] = []

    result = download_file(
        url, tmp_path / "big.bin", expected_sha256=fakehub.blob(url).sha256, service="civitai", progress=events.append
    )

    ranges = [r.headers.get("Range") for r in fakehub.requests if r.path == "/big.bin"]
    assert len(ranges) > 1 and all(r and r.startswith("bytes=") for r in ranges)
    assert 1 < max(e.connections for e in events) <= 4  # CivitAI's polite per-host cap
    assert result.sha256 == fakehub.blob(url).sha256
    assert sent(fakehub, url) < 64 * MiB + 8 * MiB  # splits cost at most a little over-read


def test_connections_sharing_a_file_fetch_no_byte_twice(fakehub, tmp_path):
    """Each request asks for a span of its segment; another connection takes over past that span, so no
    request is cut short with bytes in flight (the socket buffers of a fast link hold megabytes)."""
    url = fakehub.add_file("spans.bin", size=64 * MiB)
    fakehub.faults.update(bandwidth_per_connection=16 * MiB)
    events: list[DownloadProgress] = []

    result = download_file(url, tmp_path / "spans.bin", expect="any", max_connections=4, progress=events.append)

    assert result.sha256 == fakehub.blob(url).sha256 and max(e.connections for e in events) > 1
    assert sent(fakehub, url) == 64 * MiB


def test_connections_that_add_no_throughput_are_retired(fakehub, tmp_path):
    """A host whose total is capped: the ramp's last step brings nothing, so its connections stop after their
    running request, well before the file's end, and their ranges go to the others (fewer sockets holding
    bytes in flight)."""
    size = 192 * MiB
    url = fakehub.add_file("capped.bin", size=size)
    fakehub.faults.update(bandwidth_total=48 * MiB)
    events: list[DownloadProgress] = []

    result = download_file(url, tmp_path / "capped.bin", expect="any", progress=events.append)

    assert result.sha256 == fakehub.blob(url).sha256
    running = [e for e in events if e.state == "downloading"]
    peak = max(e.connections for e in running)
    after_peak = running[next(i for i, e in enumerate(running) if e.connections == peak) :]
    assert peak > 1 and any(e.connections < peak and e.bytes_done < 0.75 * size for e in after_peak)
    assert sent(fakehub, url) == size  # a retired connection's range is fetched once, by another


def test_blake3_is_checked_when_published(fakehub, tmp_path):
    url = fakehub.add_file("b3.bin", size=3 * MiB)
    hashes = fakehub.blob(url).hashes()
    result = download_file(url, tmp_path / "b3.bin", expected_blake3=hashes["blake3"], expect="any")
    assert result.hashes == {"sha256": hashes["sha256"], "blake3": hashes["blake3"]}

    with pytest.raises(errors.IntegrityError) as info:
        download_file(url, tmp_path / "b3-bad.bin", expected_blake3="0" * 64, expect="any")
    assert info.value.expected == "0" * 64 and info.value.actual == hashes["blake3"]
    assert not (tmp_path / "b3-bad.bin").exists()


def test_same_file_already_present_is_not_downloaded_again(fakehub, tmp_path):
    url = fakehub.add_file("same.bin", size=MiB)
    blob = fakehub.blob(url)
    dest = tmp_path / "same.bin"
    dest.write_bytes(blob.read())

    result = download_file(url, dest, expected_sha256=blob.sha256, expected_size=blob.size, expect="any")

    assert result.reused and result.sha256 == blob.sha256
    assert not fakehub.requests


def test_a_different_file_at_dest_is_replaced(fakehub, tmp_path):
    url = fakehub.add_file("new.bin", size=MiB)
    dest = tmp_path / "new.bin"
    dest.write_bytes(b"old contents")
    result = download_file(url, dest, expected_sha256=fakehub.blob(url).sha256, expect="any")
    assert not result.reused and dest.read_bytes() == fakehub.blob(url).read()


def test_sync_wrapper_works_inside_a_running_event_loop(fakehub, tmp_path):
    url = fakehub.add_file("loop.bin", size=MiB)

    async def inside_a_loop():
        return download_file(url, tmp_path / "loop.bin", expect="any")

    assert asyncio.run(inside_a_loop()).sha256 == fakehub.blob(url).sha256


def test_progress_events_and_tqdm_bar(fakehub, tmp_path):
    url = fakehub.add_file("p.bin", size=4 * MiB)
    events: list[DownloadProgress] = []
    screen = io.StringIO()
    bar = TqdmProgress("p.bin", file=screen)

    def both(event: DownloadProgress) -> None:
        events.append(event)
        bar(event)

    download_file(url, tmp_path / "p.bin", expect="any", progress=both)

    states = [e.state for e in events]
    assert states[0] == "starting" and states[-2:] == ["verifying", "done"]
    assert events[-1].bytes_done == events[-1].total == 4 * MiB
    assert all(a.bytes_done <= b.bytes_done for a, b in zip(events, events[1:], strict=False))
    assert "p.bin" in screen.getvalue() and "4.00M" in screen.getvalue()


# --- resume --------------------------------------------------------------------------------------


def test_dropped_connection_resumes_with_range(fakehub, tmp_path):
    url = fakehub.add_file("drop.bin", size=8 * MiB)
    fakehub.faults.update(drop_after_bytes=3 * MiB, drop_count=1)

    result = download_file(url, tmp_path / "drop.bin", expected_sha256=fakehub.blob(url).sha256, expect="any")

    ranges = [r.headers.get("Range") for r in fakehub.requests if r.path == "/drop.bin"]
    assert ranges[0].startswith("bytes=0-") and ranges[1].startswith("bytes=3")  # continued near 3 MiB, not from 0
    assert sent(fakehub, url) == 8 * MiB
    assert result.sha256 == fakehub.blob(url).sha256


def test_cancel_keeps_the_part_and_a_later_call_resumes_it(fakehub, tmp_path):
    url = fakehub.add_file("c.bin", size=16 * MiB)
    fakehub.faults.update(bandwidth_total=8 * MiB)
    dest = tmp_path / "c.bin"
    events: list[DownloadProgress] = []
    stop, on_progress = cancel_after(2 * MiB, events)

    with pytest.raises(errors.Cancelled, match="kept"):
        download_file(url, dest, cancel=stop, progress=on_progress, expect="any")

    assert events[-1].state == "cancelled"
    assert leftovers(dest) == ["c.bin.part", "c.bin.part.json"]
    kept = sum(e - s for s, e in json.loads((tmp_path / "c.bin.part.json").read_text())["done"])
    assert kept >= 2 * MiB

    fakehub.faults.update(bandwidth_total=None)
    first_run = sent(fakehub, url)
    result = download_file(url, dest, expected_sha256=fakehub.blob(url).sha256, expect="any")
    assert result.resumed_from == kept
    assert sent(fakehub, url) - first_run == 16 * MiB - kept  # only the missing bytes travelled
    assert leftovers(dest) == ["c.bin"]


_CHILD = """
import sys
from pathlib import Path
from hubloader.engine.download import download_file
def show(e):
    print(e.state, e.bytes_done, flush=True)
r = download_file(sys.argv[1], Path(sys.argv[2]), expect="any", progress=show,
                  expected_sha256=sys.argv[3] if len(sys.argv) > 3 else None)
print("RESULT", r.reused, r.sha256, flush=True)
"""


def child(url: str, dest: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, str(dest), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, predicate) -> str:
    for line in proc.stdout:
        if predicate(line):
            return line
    raise AssertionError(f"child ended without the expected line: {proc.stderr.read()}")


@pytest.mark.slow
def test_kill_9_mid_download_then_a_new_process_resumes(fakehub, tmp_path):
    url = fakehub.add_file("k.bin", size=48 * MiB)
    blob = fakehub.blob(url)
    dest = tmp_path / "k.bin"
    fakehub.faults.update(bandwidth_total=8 * MiB)

    proc = child(url, dest)
    wait_for_line(proc, lambda line: line.startswith("downloading") and int(line.split()[1]) >= 12 * MiB)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    assert not dest.exists()
    first_run = sent(fakehub, url)

    fakehub.faults.update(bandwidth_total=None)
    result = download_file(url, dest, expected_sha256=blob.sha256, expect="any")

    assert result.sha256 == blob.sha256 and dest.stat().st_size == blob.size
    assert result.resumed_from >= 12 * MiB - download.CHECKPOINT_BYTES
    assert sent(fakehub, url) - first_run <= blob.size - result.resumed_from + 8 * MiB  # split over-reads only
    assert leftovers(dest) == ["k.bin"]


def test_expired_signed_url_is_re_resolved_on_resume(fakehub, tmp_path):
    obj = StoredObject(GeneratedBlob(12 * MiB, "signed"), filename="m.safetensors", etag='"obj-etag"')
    stale = fakehub.signed_url("obj", obj)
    dest = tmp_path / "m.safetensors"
    fakehub.faults.update(bandwidth_total=8 * MiB)
    partial(stale, dest, 2 * MiB)

    fakehub.expire_signed_urls()
    fakehub.faults.update(bandwidth_total=None)
    resolved: list[str] = []

    def resolve() -> str:
        resolved.append(fakehub.signed_url("obj", obj))
        return resolved[-1]

    result = download_file(stale, dest, expected_sha256=obj.blob.sha256, resolve_url=resolve, expect="any")

    assert len(resolved) == 1 and result.resumed_from >= 2 * MiB
    assert result.sha256 == obj.blob.sha256


def test_signed_url_expiring_mid_download_is_re_resolved_each_time_a_connection_opens_after_expiry(fakehub, tmp_path):
    obj = StoredObject(GeneratedBlob(40 * MiB, "ramp"), filename="r.safetensors", etag='"ramp"')
    # Short-lived URLs and throttled, dropped connections: the ramp and every reconnect open after expiry.
    fakehub.faults.update(signed_url_ttl=0.3, bandwidth_per_connection=8 * MiB, drop_after_bytes=3 * MiB)
    resolved: list[str] = []

    def resolve() -> str:
        resolved.append(fakehub.signed_url("ramp", obj))
        return resolved[-1]

    result = download_file(resolve(), tmp_path / "r.safetensors", expected_sha256=obj.blob.sha256, resolve_url=resolve)

    assert result.sha256 == obj.blob.sha256 and len(resolved) > 1 + origin.MAX_RESOLVES


def test_expired_signed_url_without_a_way_to_renew_says_so(fakehub, tmp_path):
    obj = StoredObject(GeneratedBlob(MiB, "gone"), etag='"gone"')
    signed = fakehub.signed_url("gone", obj)
    fakehub.expire_signed_urls()
    source = fakehub.add_redirect("api/download/models/7", signed, status=307, host="civitai")

    with pytest.raises(errors.NetworkError) as info:
        download_file(source, tmp_path / "gone.bin", expect="any")
    assert "Request has expired" in str(info.value)
    assert not isinstance(info.value, errors.AuthRequired)
    for face in (advice.CLI, advice.GRADIO, advice.COMFYUI):
        assert "token" not in advice.explain(info.value, face).lower()
    assert "X-Amz-Signature=***" in str(info.value) or "X-Amz-Signature" not in str(info.value)
    assert not list(tmp_path.glob("gone.bin*.part*"))


def test_server_ignoring_range_restarts_cleanly(fakehub, tmp_path):
    url = fakehub.add_file("ir.bin", size=12 * MiB)
    blob = fakehub.blob(url)
    dest = tmp_path / "ir.bin"
    fakehub.faults.update(bandwidth_total=8 * MiB)
    partial(url, dest, 2 * MiB)

    fakehub.faults.update(bandwidth_total=None, ignore_range=True)
    result = download_file(url, dest, expected_sha256=blob.sha256, expect="any")

    assert result.sha256 == blob.sha256 and result.resumed_from == 0
    assert leftovers(dest) == ["ir.bin"]


def test_server_without_range_gets_one_stream(fakehub, tmp_path):
    url = fakehub.add_file("nr.bin", size=48 * MiB)
    fakehub.faults.update(ignore_range=True)
    result = download_file(url, tmp_path / "nr.bin", expected_sha256=fakehub.blob(url).sha256, expect="any")
    assert len([r for r in fakehub.requests if r.path == "/nr.bin"]) == 1
    assert result.size_bytes == 48 * MiB


def test_file_changed_on_the_server_is_fetched_again_not_spliced(fakehub, tmp_path):
    url = fakehub.add_file("ch.bin", size=12 * MiB, seed="v1")
    dest = tmp_path / "ch.bin"
    fakehub.faults.update(bandwidth_total=8 * MiB)
    partial(url, dest, 2 * MiB)

    fakehub.add_file("ch.bin", size=12 * MiB, seed="v2")  # new bytes, new ETag: If-Range fails
    fakehub.faults.update(bandwidth_total=None)
    result = download_file(url, dest, expect="any")

    assert result.resumed_from == 0
    assert result.sha256 == fakehub.blob(url).sha256 == GeneratedBlob(12 * MiB, "v2").sha256


# --- refusing bad bodies -------------------------------------------------------------------------


def test_wrong_bytes_delete_the_part_and_report_both_hashes(fakehub, tmp_path):
    url = fakehub.add_file("wrong.bin", size=4 * MiB)
    good = fakehub.blob(url).sha256
    fakehub.faults.update(wrong_bytes=MiB + 5)
    dest = tmp_path / "wrong.bin"

    with pytest.raises(errors.IntegrityError) as info:
        download_file(url, dest, expected_sha256=good, expect="any")

    assert info.value.expected == good and len(info.value.actual) == 64 and info.value.actual != good
    assert good in str(info.value) and info.value.actual in str(info.value)
    assert leftovers(dest) == []


def test_html_login_page_is_refused_as_auth_required(fakehub, tmp_path):
    url = fakehub.add_file("gated.safetensors", size=MiB, login_required=True)
    dest = tmp_path / "gated.safetensors"
    with pytest.raises(errors.AuthRequired, match="Sign in"):
        download_file(url, dest)
    assert leftovers(dest) == []


def test_json_error_body_with_200_is_refused_with_the_servers_reason(fakehub, tmp_path):
    login = (
        b'{"error":"Unauthorized","message":"The creator of this asset requires you to be logged in to download it"}'
    )
    url = fakehub.add_file("need-login", login, content_type="application/json")
    with pytest.raises(errors.AuthRequired, match="requires you to be logged in"):
        download_file(url, tmp_path / "a.safetensors")

    url = fakehub.add_file("missing", b'{"error":"File not found"}', content_type="text/plain")
    with pytest.raises(errors.NotAModelFile, match="File not found"):
        download_file(url, tmp_path / "b.safetensors")
    assert leftovers(tmp_path / "b.safetensors") == []


def test_expect_a_specific_format(fakehub, tmp_path):
    url = fakehub.add_file("not-st.bin", size=MiB)
    with pytest.raises(errors.NotAModelFile, match="safetensors"):
        download_file(url, tmp_path / "x.safetensors", expect="safetensors")
    good = fakehub.add_file("st.safetensors", safetensors_bytes(kohya_lora()))
    assert download_file(good, tmp_path / "y.safetensors", expect="safetensors").size_bytes > 0


def test_http_errors_map_to_hubloader_errors_without_the_token(fakehub, tmp_path):
    token = Secret("hf_" + "S" * 34)
    with pytest.raises(errors.NotFound) as info:
        download_file(fakehub.cdn_url + "/nothing-here", tmp_path / "n.bin", token=token)
    assert token.reveal() not in str(info.value)

    fakehub.faults.update(require_token="right-one")
    url = fakehub.add_file("t.bin", size=1024)
    with pytest.raises(errors.AuthRequired, match="refused") as info:
        download_file(url, tmp_path / "t.bin", token=token, expect="any")
    assert token.reveal() not in str(info.value)
    assert download_file(url, tmp_path / "t.bin", token=Secret("right-one"), expect="any").size_bytes == 1024


def test_unreachable_host_is_a_network_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(errors.NetworkError, match="could not connect"):
        download_file(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", retries=1)


@pytest.mark.parametrize("url", ["ftp://example.org/x.safetensors", "file:///etc/passwd", "civitai:1@2", "http:///x"])
def test_a_url_that_is_not_http_is_refused_at_once(url, tmp_path):
    # retries=50 would take minutes if the error were retried as a network one.
    with pytest.raises(errors.InvalidReference, match="Not an http"):
        download_file(url, tmp_path / "x.safetensors", retries=50)
    assert list(tmp_path.iterdir()) == []  # no .part, no folder content


def test_a_redirect_to_a_non_http_url_is_refused_not_retried(fakehub, tmp_path):
    source = fakehub.add_redirect("files/elsewhere.bin", "ftp://example.org/x.bin", status=302)
    with pytest.raises(errors.InvalidReference, match="ftp://example.org/x.bin"):
        download_file(source, tmp_path / "x.bin", retries=50, expect="any")
    assert [r.path for r in fakehub.requests].count("/files/elsewhere.bin") == 1


# --- retries and rate limits ---------------------------------------------------------------------


def test_429_honours_retry_after_then_succeeds(fakehub, tmp_path):
    url = fakehub.add_file("rl.bin", size=MiB)
    fakehub.faults.update(rate_limit=1, retry_after=1)
    events: list[DownloadProgress] = []
    result = download_file(url, tmp_path / "rl.bin", expect="any", progress=events.append)
    assert result.size_bytes == MiB
    assert len([r for r in fakehub.requests if r.path == "/rl.bin"]) == 2
    assert any(e.state == "retrying" and "429" in e.message for e in events)


def test_persistent_429_raises_rate_limited_with_retry_after(fakehub, tmp_path):
    url = fakehub.add_file("rl2.bin", size=MiB)
    fakehub.faults.update(rate_limit=10, retry_after=1)
    with pytest.raises(errors.RateLimited) as info:
        download_file(url, tmp_path / "rl2.bin", expect="any", retries=1)
    assert info.value.retry_after == 1.0
    assert len([r for r in fakehub.requests if r.path == "/rl2.bin"]) == 2


@pytest.mark.parametrize("header", ["inf", "1e999", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_an_endless_retry_after_is_capped(fakehub, tmp_path, header):
    """``Retry-After: inf`` (or a date centuries away) is read as the longest wait we accept, not forever."""
    url = fakehub.add_file("rl3.bin", size=MiB)
    fakehub.faults.update(rate_limit=10, retry_after=header)
    with pytest.raises(errors.RateLimited) as info:
        download_file(url, tmp_path / "rl3.bin", expect="any", retries=0)
    assert info.value.retry_after == MAX_RETRY_AFTER


def test_a_retry_after_beyond_the_longest_wait_is_not_slept_through(fakehub, tmp_path):
    url = fakehub.add_file("rl4.bin", size=MiB)
    fakehub.faults.update(rate_limit=10, retry_after=int(MAX_RETRY_WAIT) + 1)
    with pytest.raises(errors.RateLimited) as info:
        download_file(url, tmp_path / "rl4.bin", expect="any", retries=3)
    assert info.value.retry_after == MAX_RETRY_WAIT + 1
    assert len([r for r in fakehub.requests if r.path == "/rl4.bin"]) == 1


def test_a_stalled_connection_is_given_up_and_resumed_where_it_stopped(fakehub, tmp_path):
    url = fakehub.add_file("stall.bin", size=3 * MiB)
    fakehub.faults.update(stall_after_bytes=MiB, stall_seconds=4.0)
    result = download_file(url, tmp_path / "stall.bin", expect="any", max_connections=1, stall_timeout=0.5)
    assert result.size_bytes == 3 * MiB
    asked = [r.headers.get("Range", "") for r in fakehub.requests if r.path == "/stall.bin"]
    assert len(asked) >= 3 and asked[0].startswith("bytes=0-")  # each stall: a new request from where it stopped
    assert all(int(a.removeprefix("bytes=").split("-")[0]) >= MiB for a in asked[1:])


def test_a_server_that_never_answers_is_a_one_line_error_after_the_retries(fakehub, tmp_path):
    url = fakehub.add_file("silent.bin", size=MiB)
    fakehub.faults.update(latency=4.0)
    dest = tmp_path / "silent.bin"
    with pytest.raises(errors.NetworkError) as info:
        download_file(url, dest, expect="any", retries=1, stall_timeout=0.5)
    assert "\n" not in str(info.value) and "silent.bin" in str(info.value)
    assert len([r for r in fakehub.requests if r.path == "/silent.bin"]) == 2 and not dest.exists()


def test_a_malformed_content_range_is_a_network_error_not_a_crash(fakehub, tmp_path):
    url = fakehub.add_file("badrange.bin", size=MiB)
    fakehub.faults.update(content_range="bytes zero-ten/lots")
    with pytest.raises(errors.NetworkError, match="malformed Content-Range 'bytes zero-ten/lots'") as info:
        download_file(url, tmp_path / "badrange.bin", expect="any", retries=1)
    assert "\n" not in str(info.value) and "badrange.bin" in str(info.value)
    assert len([r for r in fakehub.requests if r.path == "/badrange.bin"]) == 2


def test_5xx_is_retried(fakehub, tmp_path):
    url = fakehub.add_file("flaky.bin", size=MiB)
    fakehub.faults.update(server_errors=1)
    assert download_file(url, tmp_path / "flaky.bin", expect="any").size_bytes == MiB


# --- one download per target ---------------------------------------------------------------------


def test_two_threads_share_one_transfer(fakehub, tmp_path):
    url = fakehub.add_file("shared.bin", size=4 * MiB)
    dest = tmp_path / "shared.bin"
    fakehub.faults.update(bandwidth_total=256 * 1024)  # slow until the second caller is waiting
    waiting = threading.Event()
    results = {}

    def first() -> None:
        results["first"] = download_file(url, dest, expect="any")

    def second() -> None:
        results["second"] = download_file(
            url, dest, expect="any", progress=lambda e: waiting.set() if e.state == "waiting" else None
        )

    t1 = threading.Thread(target=first)
    t1.start()
    while not (tmp_path / "shared.bin.part.json").exists():
        time.sleep(0.01)
    t2 = threading.Thread(target=second)
    t2.start()
    assert waiting.wait(30)
    fakehub.faults.update(bandwidth_total=None)
    t1.join(60)
    t2.join(60)

    assert not results["first"].reused and results["second"].reused
    assert results["second"].sha256 == results["first"].sha256 == fakehub.blob(url).sha256
    assert sent(fakehub, url) == 4 * MiB


def test_two_coroutines_share_one_transfer(fakehub, tmp_path):
    url = fakehub.add_file("co.bin", size=2 * MiB)
    dest = tmp_path / "co.bin"

    async def both():
        return await asyncio.gather(adownload_file(url, dest, expect="any"), adownload_file(url, dest, expect="any"))

    a, b = asyncio.run(both())
    assert sorted([a.reused, b.reused]) == [False, True]
    assert sent(fakehub, url) == 2 * MiB


def test_the_lock_of_a_target_lives_in_hubloader_home_under_one_name_for_every_spelling(fakehub, tmp_path):
    from filelock import FileLock

    (tmp_path / "models" / "loras").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "models")
    dest = tmp_path / "models" / "loras" / "one.bin"
    lock = lock_path(dest)
    assert lock.parent == Path(os.environ["HUBLOADER_HOME"]) / "locks" and lock.suffix == ".lock"
    assert lock_path(tmp_path / "link" / "loras" / ".." / "loras" / "one.bin") == lock
    assert lock_path(dest.with_name("two.bin")) != lock

    url = fakehub.add_file("one.bin", size=MiB)
    cancel = threading.Event()
    states = []

    def progress(event: DownloadProgress) -> None:
        states.append(event.state)
        cancel.set()  # the first event is "waiting": another holder has the target

    with FileLock(str(lock)):  # held through a path that only the lock name ties to dest
        with pytest.raises(errors.Cancelled):
            download_file(url, tmp_path / "link" / "loras" / "one.bin", expect="any", progress=progress, cancel=cancel)
    assert states == ["waiting"]
    assert download_file(url, dest, expect="any").size_bytes == MiB
    assert leftovers(dest) == ["one.bin"] and lock.exists()


@pytest.mark.slow
def test_two_processes_share_one_transfer(fakehub, tmp_path):
    url = fakehub.add_file("proc.bin", size=4 * MiB)
    dest = tmp_path / "proc.bin"
    fakehub.faults.update(bandwidth_total=256 * 1024)

    first = child(url, dest)
    wait_for_line(first, lambda line: line.startswith("downloading"))
    second = child(url, dest)
    wait_for_line(second, lambda line: line.startswith("waiting"))
    fakehub.faults.update(bandwidth_total=None)
    out_first, _ = first.communicate(timeout=60)
    out_second, _ = second.communicate(timeout=60)

    sha = fakehub.blob(url).sha256
    assert f"RESULT False {sha}" in out_first and f"RESULT True {sha}" in out_second
    assert sent(fakehub, url) == 4 * MiB


# --- disk space ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MiB filesystem (tmpfs); needs mount rights (root in the test container)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_too_small_is_refused_before_any_transfer(fakehub, tiny_disk):
    url = fakehub.add_file("huge.bin", size=8 * MiB)
    dest = tiny_disk / "huge.bin"
    with pytest.raises(errors.DiskFull, match="free"):
        download_file(url, dest, expected_size=8 * MiB, expect="any")
    assert not fakehub.requests and leftovers(dest) == []


def test_disk_too_small_for_the_size_the_server_announces(fakehub, tiny_disk):
    url = fakehub.add_file("huge2.bin", size=8 * MiB)
    dest = tiny_disk / "huge2.bin"
    with pytest.raises(errors.DiskFull):
        download_file(url, dest, expect="any")
    assert sent(fakehub, url) < 8 * MiB and leftovers(dest) == []


# --- auth hygiene --------------------------------------------------------------------------------


def test_token_goes_to_its_own_host_only_and_is_dropped_on_cross_host_redirect(fakehub, tmp_path):
    target = fakehub.add_file("files/m.bin", size=MiB)
    source = fakehub.add_redirect("api/download/models/1", target, status=307, host="civitai")
    token = Secret("civitai-secret-token")

    download_file(source, tmp_path / "m.bin", token=token, service="civitai", expect="any")

    seen = {(r.host, r.path): r.headers.get("Authorization") for r in fakehub.requests}
    assert seen[("civitai", "/api/download/models/1")] == "Bearer civitai-secret-token"
    assert seen[("cdn", "/files/m.bin")] is None
    assert all("civitai-secret-token" not in r.query for r in fakehub.requests)


def test_huggingface_resolve_redirect_to_cdn_drops_the_token(fakehub, tmp_path):
    data = safetensors_bytes(kohya_lora(), seed=3)
    fakehub.add_hf_repo("org/repo", files={"lora.safetensors": data})
    fakehub.valid_hf_tokens.add("hf_tok")
    url = f"{fakehub.hf_url}/org/repo/resolve/main/lora.safetensors"

    result = download_file(url, tmp_path / "lora.safetensors", token=Secret("hf_tok"), service="huggingface")

    assert result.size_bytes == len(data)
    auth = {
        r.host: r.headers.get("Authorization")
        for r in fakehub.requests
        if r.path.endswith("safetensors") or r.host == "cdn"
    }
    assert auth["hf"] == "Bearer hf_tok" and auth["cdn"] is None


# --- planted links ---------------------------------------------------------------------------------


def plant_links(dest: Path, elsewhere: Path) -> tuple[Path, Path]:
    """Make ``dest``'s ``.part`` and ``.part.json`` links to two files elsewhere (a valid-looking record in one)."""
    elsewhere.mkdir()
    victim, record = elsewhere / "victim.bin", elsewhere / "record.json"
    victim.write_bytes(b"someone else's file\n" * 10)
    record.write_text(json.dumps({"version": 1, "size": None, "etag": None, "last_modified": None,
                                  "sha256": None, "done": [[0, 200]]}))  # fmt: skip
    dest.parent.mkdir(parents=True, exist_ok=True)
    (dest.parent / (dest.name + ".part")).symlink_to(victim)
    (dest.parent / (dest.name + ".part.json")).symlink_to(record)
    return victim, record


def test_a_planted_part_link_is_replaced_and_its_target_untouched(fakehub, tmp_path):
    data = safetensors_bytes(kohya_lora(), seed=3)
    url = fakehub.add_file("models/linked.safetensors", data)
    dest = tmp_path / "loras" / "linked.safetensors"
    victim, record = plant_links(dest, tmp_path / "elsewhere")
    before = (victim.read_bytes(), record.read_bytes())

    download_file(url, dest, expected_sha256=fakehub.blob(url).sha256, expected_size=len(data))

    assert dest.read_bytes() == data and not dest.is_symlink()
    assert (victim.read_bytes(), record.read_bytes()) == before
    assert leftovers(dest) == ["linked.safetensors"]


def test_an_interrupted_download_never_writes_through_planted_links(fakehub, tmp_path):
    url = fakehub.add_file("big.bin", size=16 * MiB)
    fakehub.faults.update(bandwidth_total=8 * MiB)
    dest = tmp_path / "big.bin"
    victim, record = plant_links(dest, tmp_path / "elsewhere")
    before = (victim.read_bytes(), record.read_bytes())

    partial(url, dest, 2 * MiB)

    assert (victim.read_bytes(), record.read_bytes()) == before
    part, meta = dest.parent / "big.bin.part", dest.parent / "big.bin.part.json"
    assert not part.is_symlink() and not meta.is_symlink()
    assert sum(e - s for s, e in json.loads(meta.read_text())["done"]) >= 2 * MiB  # our own record


# --- minimum speed ---------------------------------------------------------------------------------


def test_a_trickling_connection_is_dropped_and_the_range_fetched_again_from_where_it_stopped(fakehub, tmp_path):
    url = fakehub.add_file("trickle.bin", size=2 * MiB)
    fakehub.faults.update(trickle_bytes_s=4096, trickle_count=1)  # the first answer trickles, later ones do not
    result = download_file(
        url, tmp_path / "trickle.bin", expect="any", max_connections=1, min_speed=64 * 1024, min_speed_window=0.5
    )
    assert result.sha256 == fakehub.blob(url).sha256
    asked = [r.headers.get("Range", "") for r in fakehub.requests if r.path == "/trickle.bin"]
    assert len(asked) == 2 and asked[0].startswith("bytes=0-")
    assert int(asked[1].removeprefix("bytes=").split("-")[0]) > 0  # the trickle's bytes were kept
    assert sent(fakehub, url) < 2 * MiB + 16 * 1024  # only what was in flight when it was dropped is sent twice


def test_a_download_on_which_every_connection_trickles_fails_in_one_line_and_keeps_the_part(fakehub, tmp_path):
    url = fakehub.add_file("slow.bin", size=2 * MiB)
    fakehub.faults.update(trickle_bytes_s=4096)
    dest = tmp_path / "slow.bin"
    with pytest.raises(errors.NetworkError) as info:
        download_file(url, dest, expect="any", retries=1, min_speed=64 * 1024, min_speed_window=0.5)
    message = str(info.value)
    assert "\n" not in message and "slow.bin" in message and "65.5 KB/s" in message, message
    assert len([r for r in fakehub.requests if r.path == "/slow.bin"]) == 2  # the first try and one retry
    assert (tmp_path / "slow.bin.part").stat().st_size > 0 and not dest.exists()


def test_the_minimum_speed_comes_from_the_settings_and_zero_turns_it_off(fakehub, tmp_path):
    save_settings({"min_speed_bytes_s": 0})
    url = fakehub.add_file("slow-ok.bin", size=64 * 1024)
    fakehub.faults.update(trickle_bytes_s=64 * 1024)
    result = download_file(url, tmp_path / "slow-ok.bin", expect="any", min_speed_window=0.2)
    assert result.size_bytes == 64 * 1024
    assert len([r for r in fakehub.requests if r.path == "/slow-ok.bin"]) == 1
