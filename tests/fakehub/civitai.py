"""CivitAI REST v1 imitation (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import FakeHub


class CivitaiCatalog:
    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub

    def add_model(self, name: str, **kwargs: object) -> tuple[int, int]:
        raise NotImplementedError

    def add_version(self, model_id: int, name: str, **kwargs: object) -> int:
        raise NotImplementedError

    def routes(self) -> list[web.RouteDef]:
        return []

    async def image(self, request: web.Request) -> web.Response:
        return web.Response(status=404)
