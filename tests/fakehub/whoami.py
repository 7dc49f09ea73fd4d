"""Who a token belongs to, as the real services answer it: HuggingFace ``GET /api/whoami-v2`` and CivitAI
``GET /api/v1/me``. Strict like them: no token, or one they do not know, is a 401 (``hubloader login`` must
refuse a bad token, so the fake must refuse it too). ``hub.token_owners`` names a valid token's user."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:  # pragma: no cover
    from .server import FakeHub

DEFAULT_USER = "fake-user"


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() or None if auth.lower().startswith("bearer ") else None


def hf_routes(hub: FakeHub) -> list[web.RouteDef]:
    """``/api/whoami-v2``: the Hub answers only ``Authorization: Bearer`` tokens."""

    async def whoami(request: web.Request) -> web.Response:
        token = _bearer(request)
        if token is None:
            return web.json_response({"error": "Invalid username or password."}, status=401)
        if token not in hub.valid_hf_tokens and not any(token in granted for granted in hub.grants.values()):
            return web.json_response({"error": "Invalid credentials in Authorization header"}, status=401)
        name = hub.token_owners.get(token, DEFAULT_USER)
        return web.json_response(
            {
                "type": "user",
                "id": "65f0c0ffee0000000000beef",
                "name": name,
                "fullname": name.title(),
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "read"}},
            }
        )

    return [web.get("/api/whoami-v2", whoami)]


def civitai_routes(hub: FakeHub) -> list[web.RouteDef]:
    """``/api/v1/me``: missing, malformed and revoked keys alike are ``401 {"error": "Unauthorized"}``."""

    async def me(request: web.Request) -> web.Response:
        from .server import request_token

        token = request_token(request)
        if token is None or token not in hub.civitai_tokens:
            return web.json_response({"error": "Unauthorized"}, status=401)
        return web.json_response(
            {"id": 4242, "username": hub.token_owners.get(token, DEFAULT_USER), "tier": "free", "status": "active"}
        )

    return [web.get("/api/v1/me", me)]
