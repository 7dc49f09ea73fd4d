"""An install plan asks each source what a download needs without fetching it; a Hub that redirects that
question to another host is not followed there (every hop checked, as the gate checks a download's)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hubloader.workflows.probe import probe


class _Elsewhere(BaseHTTPRequestHandler):
    asked: list[str] = []

    def do_HEAD(self) -> None:
        self.asked.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _HostileHub(BaseHTTPRequestHandler):
    elsewhere = ""

    def do_HEAD(self) -> None:
        self.send_response(307)
        self.send_header("Location", f"{self.elsewhere}/owner/renamed/resolve/main/model.safetensors")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[str]:
    _Elsewhere.asked = []
    yield from _serve(_Elsewhere)


def test_a_hub_redirect_to_another_host_is_not_followed(elsewhere: str, monkeypatch):
    _HostileHub.elsewhere = elsewhere.replace("127.0.0.1", "localhost")  # another host name than the Hub's
    hub = _serve(_HostileHub)
    endpoint = next(hub)
    try:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.delenv("HUBLOADER_ALLOWED_HOSTS", raising=False)
        found = probe(f"{endpoint}/owner/repo/resolve/main/model.safetensors")
    finally:
        next(hub, None)
    assert not found.ok and "not a known model host" in found.reason
    assert _Elsewhere.asked == []
