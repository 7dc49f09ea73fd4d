"""HuggingFace Hub imitation (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import FakeHub


class HfCatalog:
    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.renames: dict[str, str] = {}

    def add_repo(self, repo_id: str, files: dict | None = None, **kwargs: object) -> str:
        raise NotImplementedError

    def routes(self) -> list[web.RouteDef]:
        return []
