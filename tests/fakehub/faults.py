"""Fault and limit switches of the fake hub. All off by default; ``FakeHub.reset()`` turns them off again.

Request faults (``latency``, ``rate_limit``, ``server_errors``, ``require_token``, ``html_login``)
apply to every request except the ``/_fake/`` admin routes, optionally only to paths starting with
``path_prefix``. Body faults (bandwidth caps, ``trickle_bytes_s``, ``drop_after_bytes``, ``wrong_bytes``,
``ignore_range``) apply to file bodies: plain files, HF resolve/CDN, CivitAI storage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class Faults:
    bandwidth_per_connection: int | None = None  # bytes/s for each response body
    bandwidth_total: int | None = None  # bytes/s shared by all bodies being sent
    trickle_bytes_s: int | None = None  # pace a response body at this many bytes/s (a server that trickles) ...
    trickle_count: int | None = None  # ... for this many responses (None: every one); later ones go at full speed
    drop_after_bytes: int | None = None  # close the connection after this many body bytes of a response
    drop_count: int | None = None  # how many responses to drop that way (None: every one)
    wrong_bytes: int | None = None  # flip the byte at this absolute file offset (and the next 15)
    latency: float = 0.0  # seconds to wait before answering each request
    ignore_range: bool = False  # answer 200 with the full body even when Range is asked
    require_token: str | None = None  # every request must carry this token (Bearer or ?token=), else 401
    rate_limit: int = 0  # the next N requests get 429
    retry_after: int = 1  # Retry-After seconds sent with those 429s
    server_errors: int = 0  # the next N requests get 503
    html_login: bool = False  # file bodies and downloads answer 200 text/html login page instead
    signed_url_ttl: float = 3600.0  # lifetime of signed storage/CDN URLs issued from now on (seconds)
    hostile_filename: str | None = None  # CivitAI Content-Disposition filename override, e.g. "../../evil.safetensors"
    stall_after_bytes: int | None = None  # each response body goes silent after this many bytes ...
    stall_seconds: float = 5.0  # ... for this long (a stalled server), then goes on
    content_range: str | None = None  # sent instead of the true Content-Range of 206 answers (a broken server)
    path_prefix: str | None = None  # request faults only for paths starting with this
    extra: dict = field(default_factory=dict)  # free-form, for experiments driven over /_fake/faults

    def update(self, **changes: object) -> None:
        """Set switches by name; an unknown name is an error (a typo must not silently do nothing)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise KeyError(f"unknown fault switch(es) {sorted(unknown)}; known: {sorted(names)}")
        for name, value in changes.items():
            setattr(self, name, value)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def applies_to(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)
