"""HTTP routes under /hubloader/ and websocket events ``hubloader.*`` for the page.

ComfyUI has no authentication and is often reachable from a network, so every route treats its input
as hostile: downloads only from references the hub layer parses (HuggingFace, CivitAI, the configured
endpoints), only into ComfyUI's model folder kinds, under sanitised names; tokens are written, never read;
settings that move bytes only from a loopback client; an unknown host is fetched only for a file with a
published SHA256 when a local client names it in ``confirm_hosts`` (SECURITY.md). A storage fault (read-only
folder, name too long) is a one-line JSON error, never a traceback.
Blocking hub calls run in a worker thread so the server's event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from hubloader.core import settings as config
from hubloader.core.errors import ConfigError, HubloaderError, InvalidReference, NotFound
from hubloader.core.folders import kind_of
from hubloader.core.metadata import BaseModel, ModelType, SortBy, Source
from hubloader.core.settings import LOCAL_ONLY_KEYS
from hubloader.faces.advice import COMFYUI, advice, storage_fault
from hubloader.faces.jobs import DONE, JobManager
from hubloader.sharedcache.cache import check_shared_cache, shared_cache_status
from hubloader.workflows.fetching import fetch_resolved

from . import fetch, folders
from .loaders import MODEL_INPUTS

log = logging.getLogger(__name__)
PREFIX = "/hubloader"
#: Settings the page may write (tokens included: write-only, shown back as "set"/"not set").
WRITABLE_SETTINGS = frozenset({"hf_token", "civitai_token", "nsfw", "max_connections", "shared_cache"})

#: A bare "yes" a page might send to confirm every host: no route honours it (SECURITY.md).
CONFIRM_FIELDS = frozenset({"confirm", "confirmed"})
#: The field naming the hosts (``host`` or ``host:port``) a local user confirmed for this fetch.
CONFIRM_HOSTS = "confirm_hosts"
#: The most hosts one fetch may confirm, and the longest host name (a host name is at most 253 characters).
MAX_CONFIRMED_HOSTS, MAX_HOST_CHARS = 32, 260

Send = Callable[[str, dict[str, Any]], None]

#: The websocket events of a download: ``hubloader.download.state`` and ``hubloader.download.progress``, each
#: with the job's dict (web/hubloader.js listens to exactly these names).
DOWNLOAD_EVENT = "hubloader.download"


def _error(exc: Exception, status: int = 400) -> web.Response:
    """``{"error": what happened, "hint": what is needed, then what to do in the sidebar}``."""
    hint = " ".join(part for part in (getattr(exc, "hint", ""), advice(exc, COMFYUI)) if part)
    message = getattr(exc, "message", str(exc))
    return web.json_response({"error": message, "hint": hint}, status=status)


#: The peers a browser on this machine connects from.
LOCAL_PEERS = frozenset({"127.0.0.1", "::1"})


def is_local(request: web.Request) -> bool:
    """A browser on this machine: a peer of exactly 127.0.0.1 or ::1 (what ``localhost`` connects from) that no
    proxy forwarded (behind a reverse proxy every peer is loopback). Anything else counts as the network: other
    hosts, a container's bridge, and other 127.x addresses alike."""
    forwarded = any(name in request.headers for name in ("Forwarded", "X-Forwarded-For", "X-Real-IP"))
    return not forwarded and (request.remote or "").split("%", 1)[0] in LOCAL_PEERS


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _one_line_on_storage_faults(handler: Handler) -> Handler:
    """A storage fault (read-only folder, full disk, a name too long) answers one JSON line, not a 500 traceback:
    507 for a full disk, 503 for the rest (the server cannot do it until its storage is fixed)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except OSError as exc:
            log.warning("hubloader: %s %s: %s", request.method, request.path, storage_fault(exc))
            status = 507 if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) else 503
            return web.json_response({"error": config.redact_text(storage_fault(exc)), "hint": ""}, status=status)

    return wrapped


def _same_origin(request: web.Request) -> bool:
    """No ``Origin``, or the page's own: another site's page in a local browser can post to 127.0.0.1 (a JSON body
    sent as text/plain needs no CORS preflight), so what only this machine's user may do also needs this."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc.lower() == request.host.lower()


def _forbidden(message: str) -> web.Response:
    return web.json_response({"error": message, "hint": "Do it on the machine that runs ComfyUI."}, status=403)


def _status_of(exc: HubloaderError) -> int:
    if isinstance(exc, (InvalidReference, ConfigError)):
        return 400
    if isinstance(exc, NotFound):
        return 404
    return 502


async def _blocking(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: function(*args, **kwargs))


def _kind_of_type(model_type: ModelType) -> str:
    return kind_of(model_type)


def _card(meta: Any) -> dict[str, Any]:
    """What a result card shows: the metadata plus the ComfyUI folder it would go to."""
    data = meta.to_dict()
    data.pop("description", None)  # can be long HTML; the details route gives it
    data["kind"] = _kind_of_type(meta.type)
    data["reference"] = meta.air or meta.model_id
    return data


class HubRoutes:
    """The route handlers, bound to one job queue and one event sender (ComfyUI's websocket, or a test's)."""

    def __init__(self, jobs: JobManager, send: Send) -> None:
        self.jobs = jobs
        self.send = send
        jobs.subscribe(self._job_event)

    def add_to(self, routes: web.RouteTableDef) -> None:
        for method, path, handler in (
            ("GET", "search", self.search),
            ("GET", "details", self.details),
            ("POST", "downloads", self.start_download),
            ("GET", "downloads", self.list_downloads),
            ("POST", "downloads/{job_id}/cancel", self.cancel_download),
            ("GET", "library", self.library),
            ("GET", "model", self.model_info),
            ("GET", "settings", self.get_settings),
            ("POST", "settings", self.set_settings),
            ("POST", "missing", self.missing),
            ("POST", "missing/fetch", self.fetch_missing),
            ("GET", "plan", self.plan),
            ("POST", "plan", self.plan),
            ("GET", "nodes", self.node_inputs),
            ("GET", "source", self.source_entry),
        ):
            routes.route(method, f"{PREFIX}/{path}")(_one_line_on_storage_faults(handler))

    # -- events ----------------------------------------------------------------------------------------
    def _job_event(self, event: str, job: dict[str, Any]) -> None:
        if event == "state" and job["state"] == DONE and job["kind"]:
            folders.refresh(job["kind"])
        self.send(f"{DOWNLOAD_EVENT}.{event}", job)
        if event == "state" and job["state"] == DONE:
            self.send("hubloader.models.changed", {"kind": job["kind"], "name": job["filename"]})

    # -- search and details ----------------------------------------------------------------------------
    async def search(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            sources = _sources(q.get("source", "all"))
            model_type = ModelType.parse(q["type"]) if q.get("type") else None
            base = BaseModel.parse(q["base"]) if q.get("base") else None
            limit = max(1, min(int(q.get("limit", "20")), 100))
            sort = SortBy.parse(q["sort"], SortBy.POPULARITY) if q.get("sort") else None
        except ValueError as exc:
            return _error(exc)
        try:
            results, warnings = await _blocking(_search, q.get("q", ""), sources, model_type, base, limit, sort)
        except HubloaderError as exc:
            return _error(exc, _status_of(exc))
        return web.json_response({"results": [_card(m) for m in results], "warnings": warnings})

    async def details(self, request: web.Request) -> web.Response:
        reference = request.query.get("ref", "")
        try:
            meta = await _blocking(_details, reference)
        except HubloaderError as exc:
            return _error(exc, _status_of(exc))
        data = _card(meta)
        data["description"] = meta.description
        return web.json_response(data)

    # -- downloads ---------------------------------------------------------------------------------------
    async def start_download(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            reference = str(body.get("ref") or "").strip()
            fetch.check_reference(reference)
            kind = folders.check_kind(
                body.get("kind") or _kind_of_type(ModelType.parse(body.get("type"), ModelType.OTHER))
            )
        except (ValueError, AttributeError) as exc:
            return _error(ValueError(f"Bad request: {exc}"))
        except HubloaderError as exc:
            return _error(exc)
        label = str(body.get("label") or reference)[:200]
        job = self.jobs.submit(
            label,
            lambda progress, cancel: fetch.fetch(reference, kind, progress=progress, cancel=cancel),
            kind=kind,
            ref=reference,
        )
        return web.json_response(job.to_dict(), status=202)

    async def list_downloads(self, request: web.Request) -> web.Response:
        return web.json_response({"downloads": [job.to_dict() for job in self.jobs.list()]})

    async def cancel_download(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        if not self.jobs.cancel(job_id):
            return web.json_response({"error": f"No running download {job_id!r}."}, status=404)
        return web.json_response({"cancelled": job_id})

    # -- local models --------------------------------------------------------------------------------------
    async def library(self, request: web.Request) -> web.Response:
        try:
            kinds = [folders.check_kind(request.query["kind"])] if request.query.get("kind") else folders.model_kinds()
        except HubloaderError as exc:
            return _error(exc)
        return web.json_response({"models": await _blocking(_library, kinds)})

    async def model_info(self, request: web.Request) -> web.Response:
        """One local file: exists?, trigger words, weight, source URL and hash (for properties.models)."""
        try:
            kind = folders.check_kind(request.query.get("kind", ""))
        except HubloaderError as exc:
            return _error(exc)
        name = request.query.get("name", "")
        problem = folders.check_name(name)
        if problem:
            return _error(ValueError(problem))
        return web.json_response(await _blocking(_model_info, kind, name))

    async def source_entry(self, request: web.Request) -> web.Response:
        """The ``properties.models`` entry for a loader's ``source`` (``?kind=loras&source=civitai:1@2``): the file's
        name as it will be placed, its URL, folder and hash, so a workflow saved before it runs says how to fetch
        it. From this machine only: it asks the source and may hash a same-named local file (SECURITY.md)."""
        if not is_local(request):
            return _forbidden("Only a browser on this machine may ask for a source's file entry; nothing was asked.")
        try:
            kind = folders.check_kind(request.query.get("kind", ""))
            return web.json_response(await _blocking(fetch.models_entry, request.query.get("source", ""), kind))
        except HubloaderError as exc:
            return _error(exc, _status_of(exc))

    async def node_inputs(self, request: web.Request) -> web.Response:
        return web.json_response({node: {"kind": k, "input": i} for node, (k, i) in MODEL_INPUTS.items()})

    # -- settings -------------------------------------------------------------------------------------------
    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(_public_settings())

    async def set_settings(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(ValueError("Send a JSON object of settings."))
        local_only = sorted(set(body) & LOCAL_ONLY_KEYS) if isinstance(body, dict) else []
        if local_only and not is_local(request):
            return _forbidden(
                f"{', '.join(local_only)} can be changed only from this machine (these settings decide where "
                "downloads come from and go, and which files are trusted); this request came from the network."
            )
        if not isinstance(body, dict) or set(body) - WRITABLE_SETTINGS:
            return _error(
                ValueError(f"Only these settings can be changed here: {', '.join(sorted(WRITABLE_SETTINGS))}.")
            )
        warnings: list[str] = []
        try:
            if "shared_cache" in body:
                if not isinstance(body["shared_cache"], (str, type(None))):
                    raise ConfigError("shared_cache must be a folder path or s3://bucket/prefix (blank: off).")
                body["shared_cache"], warnings = check_shared_cache(body["shared_cache"])
            config.save_settings(body)
        except HubloaderError as exc:
            return _error(exc)
        return web.json_response({**_public_settings(), "warnings": warnings})

    # -- missing models of a workflow -----------------------------------------------------------------------
    async def missing(self, request: web.Request) -> web.Response:
        try:
            workflow = (await request.json()).get("workflow")
        except (ValueError, AttributeError):
            return _error(ValueError('Send {"workflow": <the workflow JSON>}.'))
        resolve = request.query.get("resolve", "1") != "0"
        try:
            report = await _blocking(_resolver_report, workflow, resolve)
        except HubloaderError as exc:
            return _error(exc, _status_of(exc))
        return web.json_response({**report.to_dict(), "confirm": _host_questions(report)})

    async def fetch_missing(self, request: web.Request) -> web.Response:
        """Resolve the workflow again server-side (never trust URLs echoed by the page) and queue each fetch.

        ``confirm_hosts``: hosts outside the known ones that the user on this machine confirmed (from the network:
        403); a file on such a host is still fetched only with its published SHA256 (the gate checks)."""
        try:
            body = await request.json()
            workflow = body.get("workflow")
        except (ValueError, AttributeError):
            return _error(ValueError('Send {"workflow": <the workflow JSON>}.'))
        confirming = (CONFIRM_FIELDS | {CONFIRM_HOSTS}) & set(body)
        if confirming and not (is_local(request) and _same_origin(request)):
            return _forbidden(
                "A request from the network cannot confirm a host outside HuggingFace and CivitAI; nothing was queued."
            )
        if CONFIRM_FIELDS & confirming:
            return _error(
                ValueError(
                    "The sidebar cannot confirm a host outside HuggingFace and CivitAI with a bare yes; name each "
                    f"host in {CONFIRM_HOSTS}. Nothing was queued."
                )
            )
        try:
            hosts = _confirmed_hosts(body.get(CONFIRM_HOSTS))
            resolver, report = await _blocking(_resolver_and_report, workflow, hosts)
        except HubloaderError as exc:
            return _error(exc, _status_of(exc))
        jobs = [self._queue_item(resolver, item) for item in report.items if item.status.value == "resolved"]
        answer = {
            "report": report.to_dict(),
            "confirm": _host_questions(report),
            "downloads": [j.to_dict() for j in jobs],
        }
        return web.json_response(answer, status=202)

    def _queue_item(self, resolver: Any, item: Any) -> Any:
        from hubloader import pipeline as place

        kind = item.reference.kind or item.chosen.kind

        def work(progress: Callable[[int, int], None], cancel: Any) -> Any:
            placed = fetch_resolved(resolver, item, progress=place.progress_in_bytes(progress), cancel=cancel)
            fetch.register(placed)
            return placed.path

        return self.jobs.submit(item.reference.name, work, kind=kind, ref=item.chosen.url)

    async def plan(self, request: web.Request) -> web.Response:
        """The install plan of a workflow: POST ``{"workflow": <JSON>}`` or GET ``?workflow=<JSON text>``.

        Read-only (it fetches nothing: each source is asked what a download would need), so any client may ask;
        the workflow comes in the request, never as a path on this machine. The answer is
        :meth:`hubloader.workflows.plan.InstallPlan.to_dict` (see the README's "Install plans")."""
        return await _plan_response(request)


# -- blocking helpers (run in a worker thread) ------------------------------------------------------------


def _sources(text: str) -> list[Source]:
    text = (text or "all").lower()
    if text in ("all", "both", ""):
        return [Source.CIVITAI, Source.HUGGINGFACE]
    return [Source.parse(part) for part in text.split(",")]


def _search(
    query: str,
    sources: list[Source],
    model_type: ModelType | None,
    base: BaseModel | None,
    limit: int,
    sort: SortBy | None,
) -> tuple[list[Any], list[str]]:
    """Each hub answers in the order asked (its newest, not a re-ordered page of its most popular);
    the sources' answers then merge into one listing in that order."""
    from hubloader.registry import ModelRegistry

    with ModelRegistry() as registry:
        results = registry.search(
            query or None, sources=sources, model_type=model_type, base_model=base, limit=limit, sort=sort
        )
    found = list(results)
    if sort is not None:
        found.sort(key=_SORT_KEYS[sort], reverse=True)
    return found, results.warnings


_SORT_KEYS: dict[SortBy, Callable[[Any], Any]] = {
    SortBy.POPULARITY: lambda m: m.download_count,
    SortBy.RATING: lambda m: m.rating,
    SortBy.NEWEST: lambda m: m.created_at,
    SortBy.LIKES: lambda m: m.like_count,
}


def _details(reference: str) -> Any:
    ref = fetch.check_reference(reference)
    if ref.source is Source.HUGGINGFACE:
        from hubloader.sources.huggingface import HuggingFaceHubService

        return HuggingFaceHubService().model_info(str(ref))
    from hubloader.sources.civitai import CivitAIService

    return CivitAIService().lookup(ref)


def _library(kinds: list[str]) -> list[dict[str, Any]]:
    models = []
    for kind in kinds:
        for name in folders.list_names(kind):
            path = folders.full_path(kind, name)
            if path is None:
                continue
            words, weight = fetch.describe(path)
            models.append(
                {
                    "kind": kind,
                    "name": name,
                    "size_bytes": path.stat().st_size,
                    "trigger_words": words,
                    "recommended_weight": weight,
                }
            )
    return models


def _model_info(kind: str, name: str) -> dict[str, Any]:
    path = folders.full_path(kind, name)
    if path is None:
        return {"kind": kind, "name": name, "exists": False}
    words, weight = fetch.describe(path)
    info: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "exists": True,
        "size_bytes": path.stat().st_size,
        "trigger_words": words,
        "recommended_weight": weight,
        "url": "",
        "sha256": "",
    }
    known = fetch.known_source(path)
    if known is not None:
        info["url"], info["sha256"] = known
    return info


async def _plan_response(request: web.Request) -> web.Response:
    try:
        if request.method == "POST":
            workflow = (await request.json()).get("workflow")
        else:
            workflow = json.loads(request.query.get("workflow", ""))
    except (ValueError, AttributeError):
        return _error(ValueError('Send {"workflow": <the workflow JSON>} (POST) or ?workflow=<JSON> (GET).'))
    try:
        plan = await _blocking(_install_plan, workflow)
    except HubloaderError as exc:
        return _error(exc, _status_of(exc))
    return web.json_response(plan.to_dict())


def _install_plan(workflow: Any) -> Any:
    if not isinstance(workflow, dict):
        raise InvalidReference(
            "The workflow must be a JSON object (UI or API format).", hint="Send the workflow as saved by ComfyUI."
        )
    from hubloader.workflows.plan import Planner

    return Planner(_resolver()).plan(workflow)


def _public_settings() -> dict[str, Any]:
    shown = {k: v for k, v in config.public_settings().items() if k in WRITABLE_SETTINGS or k.endswith("_endpoint")}
    shown["shared_cache_status"] = shared_cache_status()
    return shown


def _resolver(confirmed_hosts: frozenset[str] = frozenset()) -> Any:
    from hubloader.core.folders import active_folders
    from hubloader.workflows import Resolver

    return Resolver(active_folders(), confirmed_hosts=confirmed_hosts)


def _confirmed_hosts(value: Any) -> frozenset[str]:
    """``confirm_hosts`` as sent: a short list of host names (``host`` or ``host:port``)."""
    if value is None:
        return frozenset()
    hosts = value if isinstance(value, list) else None
    if (
        hosts is None
        or len(hosts) > MAX_CONFIRMED_HOSTS
        or not all(
            isinstance(h, str) and 0 < len(h) <= MAX_HOST_CHARS and h.isprintable() and " " not in h for h in hosts
        )
    ):
        raise InvalidReference(f'{CONFIRM_HOSTS} must be a list of host names, e.g. ["models.example.org"].')
    return frozenset(h.strip().lower() for h in hosts)


def _host_questions(report: Any) -> list[dict[str, object]]:
    """The resolved models on hosts a local user must confirm (``confirmable`` false: no published SHA256, so
    never fetched): what the sidebar shows before it sends ``confirm_hosts``."""
    from hubloader.workflows.download import hosts_to_confirm

    return [question.to_dict() for question in hosts_to_confirm(report)]


def _resolver_report(workflow: Any, resolve: bool) -> Any:
    if not isinstance(workflow, dict):
        raise InvalidReference(
            "The workflow must be a JSON object (UI or API format).", hint="Send the workflow as saved by ComfyUI."
        )
    resolver = _resolver()
    return resolver.resolve(workflow) if resolve else resolver.check(workflow)


def _resolver_and_report(workflow: Any, confirmed_hosts: frozenset[str]) -> tuple[Any, Any]:
    if not isinstance(workflow, dict):
        raise InvalidReference(
            "The workflow must be a JSON object (UI or API format).", hint="Send the workflow as saved by ComfyUI."
        )
    resolver = _resolver(confirmed_hosts)
    return resolver, resolver.resolve(workflow)
