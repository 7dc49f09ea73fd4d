"""What a source asks the gate to fetch: a plain description, no behaviour."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hubloader.core.settings import Secret

#: The services whose token a request may carry (sent only to that service's own endpoint).
TOKEN_SERVICES = ("huggingface", "civitai")


@dataclass(frozen=True)
class FileRequest:
    """One file to fetch and where it lands.

    ``folder`` / ``name``: the file lands as ``folder/name`` (``name`` a plain file name). ``sha256`` / ``size``:
    what the source publishes ("" / None: unknown). ``token_service``: whose token may be sent ("huggingface",
    "civitai", None) and ``token`` the source's own (None: the configured one). ``source``: the engine's service for rate limits ("huggingface", "civitai", "url").
    ``published_size``: the size the source states only roughly (CivitAI's sizeKB), for the free-space check alone.
    ``format_name``: the name that tells the file's format when ``name`` does not (an HF blob is named by its
    hash). ``confirmed_hosts``: hosts (``host`` or ``host:port``) outside the known ones that a local user confirmed
    for this request; ``confirmed``: the host of ``url`` is confirmed (both need ``sha256``; every hop is checked).
    ``resolve``: a fresh URL when a signed one expires. ``record``: what the shared cache keeps about the file.
    """

    url: str
    folder: Path
    name: str
    sha256: str = ""
    size: int | None = None
    published_size: int | None = None  # approximate: never checked against the bytes
    token_service: str | None = None
    token: Secret | None = None  # the source's own token for token_service (None: the configured one)
    source: str = "url"
    format_name: str = ""
    allow_pickle: bool | None = None  # None: the allow_pickle setting
    expect: str = "model"  # "model": refuse text answers; "any": config and text files too
    confirmed: bool = False
    confirmed_hosts: frozenset[str] = frozenset()
    resolve: Callable[[], str] | None = None
    record: dict[str, object] = field(default_factory=dict)

    @property
    def dest(self) -> Path:
        return self.folder / self.name

    @property
    def shown_name(self) -> str:
        """The name whose extension says the format."""
        return self.format_name or self.name
