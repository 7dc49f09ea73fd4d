"""``/_fake/`` admin routes: drive a FakeHub from another process (benchmarks, multi-process tests).

GET  /_fake/                   {"hf_url", "civitai_url", "cdn_url"}
GET  /_fake/faults             the switches; POST a JSON object to change some ({"latency": 0.1})
POST /_fake/reset              everything back to the start state
GET  /_fake/counters           {"bytes_sent": {path: n}, "bytes_total": n, "requests": n}
GET  /_fake/requests           [{"method", "path", "query", "host", "headers"}]
POST /_fake/files              {"path", "size" | "text", "seed"?, "host"?, "login_required"?} -> {"url"}
POST /_fake/hf_repos           {"repo_id", "files": {path: size | text}, other add_hf_repo args} -> {"sha"}
POST /_fake/civitai_models     {"name", add_civitai_model args} -> {"model_id", "version_id"}
POST /_fake/tokens             {"hf": [...], "civitai": [...], "grants": {target: [token]}}
POST /_fake/expire_signed_urls every signed URL issued so far stops working
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import FakeHub


def _file_body(value: object) -> bytes | tuple[str, int]:
    """JSON can't carry bytes: an int is a generated size, a string is the file's text."""
    return ("generated", value) if isinstance(value, int) else str(value).encode()


def routes(hub: FakeHub) -> list[web.RouteDef]:
    async def index(request: web.Request) -> web.Response:
        return web.json_response({"hf_url": hub.hf_url, "civitai_url": hub.civitai_url, "cdn_url": hub.cdn_url})

    async def faults(request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                hub.faults.update(**await request.json())
            except KeyError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(hub.faults.as_dict())

    async def reset(request: web.Request) -> web.Response:
        hub.reset()
        return web.json_response({"ok": True})

    async def counters(request: web.Request) -> web.Response:
        sent = dict(hub.bytes_sent)
        return web.json_response({"bytes_sent": sent, "bytes_total": sum(sent.values()), "requests": len(hub.requests)})

    async def seen(request: web.Request) -> web.Response:
        rows = [r._asdict() for r in hub.requests]
        return web.json_response(rows)

    async def files(request: web.Request) -> web.Response:
        spec = await request.json()
        path = spec.pop("path")
        if "size" in spec:
            url = hub.add_file(path, size=int(spec.pop("size")), **spec)
        else:
            url = hub.add_file(path, str(spec.pop("text")).encode(), **spec)
        return web.json_response({"url": url})

    async def hf_repos(request: web.Request) -> web.Response:
        spec = await request.json()
        files = {path: _file_body(value) for path, value in spec.pop("files", {}).items()}
        return web.json_response({"sha": hub.add_hf_repo(spec.pop("repo_id"), files, **spec)})

    async def civitai_models(request: web.Request) -> web.Response:
        spec = await request.json()
        model_id, version_id = hub.add_civitai_model(spec.pop("name"), **spec)
        return web.json_response({"model_id": model_id, "version_id": version_id})

    async def tokens(request: web.Request) -> web.Response:
        spec = await request.json()
        hub.valid_hf_tokens.update(spec.get("hf", []))
        hub.civitai_tokens.update(spec.get("civitai", []))
        for target, granted in spec.get("grants", {}).items():
            for token in granted:
                hub.grant(int(target) if str(target).isdigit() else target, token)
        return web.json_response({"ok": True})

    async def expire(request: web.Request) -> web.Response:
        hub.expire_signed_urls()
        return web.json_response({"ok": True})

    return [
        web.get("/_fake/", index),
        web.get("/_fake/faults", faults),
        web.post("/_fake/faults", faults),
        web.post("/_fake/reset", reset),
        web.get("/_fake/counters", counters),
        web.get("/_fake/requests", seen),
        web.post("/_fake/files", files),
        web.post("/_fake/hf_repos", hf_repos),
        web.post("/_fake/civitai_models", civitai_models),
        web.post("/_fake/tokens", tokens),
        web.post("/_fake/expire_signed_urls", expire),
    ]
