"""CivitAI REST v1 imitation (reference civitai.md), serving the recorded fixtures plus generated models.

Routes (on the CivitAI host): ``GET /api/v1/models``, ``/api/v1/models/{id}``,
``/api/v1/model-versions/{id}``, ``/api/v1/model-versions/by-hash/{hash}``, ``POST
/api/v1/model-versions/by-hash`` (batch: a JSON array of hashes in, a JSON list of the version
documents found out; the shape is not documented by CivitAI), ``/api/v1/enums``,
``/api/download/models/{versionId}`` (307 to a signed storage URL on the CDN host) and ``/login``.

Generated models carry the TRUE hashes of the bytes served. The recorded fixture entries keep
their recorded hashes (their real bytes are not available): downloading one serves deterministic
filler of the recorded size, which will NOT match them — use ``add_civitai_model`` for download tests.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from . import modelfiles as mf
from .bodies import LOGIN_PAGE
from .storage import Blob, GeneratedBlob, StoredObject, make_blob

if TYPE_CHECKING:
    from .server import FakeHub

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "civitai"
SITE = "http://civitai.placeholder"  # replaced by hub.civitai_url when a document is sent
IMAGES = "http://images.placeholder"  # replaced by hub.cdn_url + "/images"
SORTS = (
    "Highest Rated",
    "Most Downloaded",
    "Most Liked",
    "Most Discussed",
    "Most Collected",
    "Most Images",
    "Newest",
    "Oldest",
)
PERIODS = {"AllTime": None, "Year": 365, "Month": 30, "Week": 7, "Day": 1}
BROWSER = re.compile(r"mozilla|chrome|safari|firefox|opera|edge", re.I)
_EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
_AIR_TYPES = {
    "Checkpoint": "checkpoint",
    "LORA": "lora",
    "LoCon": "lycoris",
    "DoRA": "dora",
    "TextualInversion": "embedding",
}
_HASH_NAMES = {
    "SHA256": "sha256",
    "AutoV1": "autov1",
    "AutoV2": "autov2",
    "AutoV3": "autov3",
    "BLAKE3": "blake3",
    "CRC32": "crc32",
}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_time(text: str | None) -> datetime:
    if not text:
        return _EPOCH
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _error(status: int, error: object, **extra: object) -> web.Response:
    return web.json_response({"error": error, **extra}, status=status)


def _base_family(base_model: str) -> str:
    return "sdxl" if any(k in base_model for k in ("SDXL", "Pony", "Illustrious", "NoobAI")) else "sd15"


def _ecosystem(base_model: str) -> str:
    if base_model.startswith("Flux.1"):
        return "flux1"
    if base_model.startswith("SD 2"):
        return "sd2"
    return "sdxl" if _base_family(base_model) == "sdxl" else "sd1"


def default_model_bytes(model_type: str, base_model: str, name: str) -> bytes:
    """A small real safetensors file of the right kind (LoRA, checkpoint, embedding) for ``base_model``."""
    family = _base_family(base_model)
    seed = zlib.crc32(name.encode())
    if model_type == "Checkpoint":
        return mf.safetensors_bytes(mf.sdxl_checkpoint() if family == "sdxl" else mf.sd15_checkpoint(), seed=seed)
    if model_type == "TextualInversion":
        return mf.safetensors_bytes(mf.embedding(family), seed=seed)
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return mf.safetensors_bytes(mf.kohya_lora(family), mf.kohya_metadata(slug, family), seed=seed)


@dataclass
class VersionRules:
    """What the download route enforces for one version."""

    login_required: bool = False
    downloads_disabled: bool = False
    early_access: bool = False
    archived: bool = False


class CivitaiCatalog:
    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.models: dict[int, dict] = {}  # model documents in list-item shape, newest version first
        self.recorded_versions: dict[int, dict] = {}  # recorded version documents, served as recorded
        self.version_model: dict[int, int] = {}
        self.rules: dict[int, VersionRules] = {}
        self.blobs: dict[int, Blob] = {}  # file id -> bytes served for it
        self.hashes: dict[str, int] = {}  # upper-case hash -> version id (earliest added wins)
        self._unhashed: list[dict] = []  # generated file entries whose hashes are computed on first use
        self.image_bodies: dict[str, bytes] = {}  # CDN path -> body served instead of the tiny JPEG
        self._next_id = 9_000_001
        self._load_fixtures()

    # --- catalog -------------------------------------------------------------------------------

    def _load_fixtures(self) -> None:
        def load(name: str) -> object:
            text = (FIXTURES / name).read_text(encoding="utf-8")
            text = text.replace("https://image.civitai.com", IMAGES)
            text = text.replace("https://api.civitai.com", SITE).replace("https://civitai.com", SITE)
            return json.loads(text)

        self.enums = load("enums.json")
        for model in load("models_list_checkpoints_highest_rated_page1.json")["items"]:  # type: ignore[index]
            self._index_model(model)
        recorded = load("model_version_1387174.json")
        assert isinstance(recorded, dict)
        self.recorded_versions[recorded["id"]] = recorded
        self._index_model(self._model_from_version(recorded))

    def drop_recorded(self) -> None:
        """Forget the recorded fixtures: the demo catalogue (``--seed-demo``) lists only models whose bytes
        match their published hashes, so every card a user clicks downloads and verifies."""
        self.models.clear()
        self.version_model.clear()
        self.rules.clear()
        self.hashes.clear()
        self.recorded_versions.clear()

    def _model_from_version(self, doc: dict) -> dict:
        """A model document for a version recorded on its own (the model endpoint was not recorded)."""
        version = {key: doc[key] for key in ("id", "name", "baseModel", "baseModelType", "publishedAt")}
        version.update(
            index=0,
            modelId=doc["modelId"],
            createdAt=doc["createdAt"],
            description=doc["description"],
            availability="Public",
            nsfwLevel=1,
            trainedWords=doc["trainedWords"],
            stats=doc["stats"],
            files=doc["files"],
            images=doc["images"],
            downloadUrl=doc["downloadUrl"],
        )
        return self._model_shell(doc["modelId"], doc["model"]["name"], doc["model"]["type"], [version])

    def _model_shell(self, model_id: int, name: str, model_type: str, versions: list[dict], **fields: object) -> dict:
        stats = {"downloadCount": 0, "favoriteCount": 0, "thumbsUpCount": 0, "thumbsDownCount": 0}
        stats.update({"commentCount": 0, "ratingCount": 0, "rating": 0, "tippedAmountCount": 0})
        stats.update(fields.pop("stats", None) or {})  # type: ignore[arg-type]
        model = {
            "id": model_id,
            "name": name,
            "description": None,
            "poi": False,
            "allowNoCredit": True,
            "allowCommercialUse": ["Image"],
            "allowDerivatives": True,
            "allowDifferentLicense": True,
            "type": model_type,
            "minor": False,
            "sfwOnly": False,
            "nsfw": False,
            "nsfwLevel": 1,
            "availability": "Public",
            "cosmetic": None,
            "supportsGeneration": False,
            "stats": stats,
            "creator": {"username": "fakehub", "image": None},
            "tags": [],
            "modelVersions": versions,
        }
        model.update(fields)
        return model

    def _index_model(self, model: dict) -> None:
        self.models[model["id"]] = model
        for version in model["modelVersions"]:
            self.version_model[version["id"]] = model["id"]
            self.rules.setdefault(version["id"], VersionRules())
            for f in version["files"]:
                for value in f.get("hashes", {}).values():
                    self.hashes.setdefault(value.upper(), version["id"])

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_model(
        self,
        name: str,
        *,
        type: str = "LORA",
        base_model: str = "SDXL 1.0",
        files: list[dict] | None = None,
        trained_words: list[str] | None = None,
        description: str | None = None,
        stats: dict | None = None,
        nsfw: bool = False,
        early_access: bool = False,
        login_required: bool = False,
        downloads_disabled: bool = False,
        archived: bool = False,
        settings: dict | None = None,
        images: list[dict] | None = None,
        tags: list[str] | None = None,
        creator: str = "fakehub",
        version_name: str = "v1.0",
        published_at: str | None = None,
    ) -> tuple[int, int]:
        """Add a model with one version; returns ``(model_id, version_id)``. Ids are deterministic per reset.

        ``files``: dicts with ``name``, ``data`` (bytes, Path or ``("generated", size)``; default: a
        real small safetensors of the right kind from modelfiles.py), ``type`` ("Model"), ``format``
        ("SafeTensor"), ``size``, ``fp``, ``primary`` (the first file unless one says so).
        ``stats``: merged into the model's stats (downloadCount, thumbsUpCount, ...).
        ``settings``: the version's ``{strength, minStrength, maxStrength}`` when given.
        ``images``: image dicts (url relative to the CDN's /images/ is fine; default one generated).
        """
        model_id = self._new_id()
        published = published_at or _iso(_EPOCH + timedelta(minutes=len(self.models)))
        model = self._model_shell(
            model_id,
            name,
            type,
            [],
            description=description,
            nsfw=nsfw,
            nsfwLevel=28 if nsfw else 1,
            stats=stats,
            tags=list(tags or []),
            creator={"username": creator, "image": None},
        )
        self.models[model_id] = model
        version_id = self.add_version(
            model_id,
            version_name,
            base_model=base_model,
            files=files,
            trained_words=trained_words,
            early_access=early_access,
            login_required=login_required,
            downloads_disabled=downloads_disabled,
            archived=archived,
            settings=settings,
            images=images,
            published_at=published,
        )
        return model_id, version_id

    def add_version(
        self,
        model_id: int,
        name: str,
        *,
        base_model: str = "SDXL 1.0",
        files: list[dict] | None = None,
        trained_words: list[str] | None = None,
        early_access: bool = False,
        login_required: bool = False,
        downloads_disabled: bool = False,
        archived: bool = False,
        settings: dict | None = None,
        images: list[dict] | None = None,
        published_at: str | None = None,
        description: str | None = None,
    ) -> int:
        """Add a version (it becomes the newest, ``index`` 0) to a model; returns its id."""
        model = self.models[model_id]
        version_id = self._new_id()
        published = published_at or _iso(
            _EPOCH + timedelta(minutes=len(self.models), seconds=len(model["modelVersions"]))
        )
        download_url = f"{SITE}/api/download/models/{version_id}"
        specs = files or [{"name": re.sub(r"[^A-Za-z0-9]+", "_", model["name"]).strip("_") + ".safetensors"}]
        primary_index = next((i for i, spec in enumerate(specs) if spec.get("primary")), 0)
        entries = [
            self._file_entry(spec, model, base_model, download_url, i == primary_index) for i, spec in enumerate(specs)
        ]
        version = {
            "id": version_id,
            "index": 0,
            "name": name,
            "modelId": model_id,
            "baseModel": base_model,
            "baseModelType": "Standard",
            "createdAt": published,
            "publishedAt": published,
            "updatedAt": published,
            "status": "Published",
            "availability": "EarlyAccess" if early_access else "Public",
            "nsfwLevel": model["nsfwLevel"],
            "description": description,
            "trainedWords": list(trained_words or []),
            "stats": {
                "downloadCount": model["stats"]["downloadCount"],
                "ratingCount": 0,
                "rating": 0,
                "thumbsUpCount": model["stats"]["thumbsUpCount"],
                "thumbsDownCount": 0,
            },
            "files": entries,
            "images": images if images is not None else [self._image(version_id)],
            "downloadUrl": download_url,
        }
        if early_access:
            version["earlyAccessDeadline"] = _iso(datetime.now(timezone.utc) + timedelta(days=7))
        if settings is not None:
            version["settings"] = settings
        if archived:  # as CivitAI shows an archived model: no files listed, downloads answer 410
            model["mode"] = "Archived"
            version["files"] = []
        for older in model["modelVersions"]:
            older["index"] += 1
        model["modelVersions"].insert(0, version)
        self.version_model[version_id] = model_id
        self.rules[version_id] = VersionRules(login_required, downloads_disabled, early_access, archived)
        return version_id

    def delete_version(self, version_id: int) -> None:
        """Delete a version as its creator would: every route then answers 404 for it, and a by-hash lookup of its
        files finds another version with the same bytes, if any (the real site's behaviour)."""
        self._hash_pending()
        model = self.models[self.version_model.pop(version_id)]
        model["modelVersions"] = [v for v in model["modelVersions"] if v["id"] != version_id]
        self.rules.pop(version_id, None)
        self.hashes = {h: v for h, v in self.hashes.items() if v != version_id}
        for other in self.models.values():
            for version in other["modelVersions"]:
                for f in version["files"]:
                    for value in f.get("hashes", {}).values():
                        self.hashes.setdefault(value.upper(), version["id"])

    def _file_entry(self, spec: dict, model: dict, base_model: str, download_url: str, primary: bool) -> dict:
        file_id = self._new_id()
        body = spec.get("data")
        blob = (
            make_blob(body, seed=file_id)
            if body is not None
            else make_blob(default_model_bytes(model["type"], base_model, f"{model['name']}:{file_id}"))
        )
        self.blobs[file_id] = blob
        meta = {"format": spec.get("format", "SafeTensor"), "size": spec.get("size"), "fp": spec.get("fp")}
        url = download_url
        if not primary:
            query = {"type": spec.get("type", "Model"), **{k: v for k, v in meta.items() if v}}
            url += "?" + urlencode(query)
        entry = {
            "id": file_id,
            "sizeKB": blob.size / 1024,
            "name": spec.get("name") or f"{file_id}.safetensors",
            "type": spec.get("type", "Model"),
            "pickleScanResult": "Success",
            "pickleScanMessage": "No Pickle imports",
            "virusScanResult": "Success",
            "virusScanMessage": None,
            "scannedAt": _iso(_EPOCH),
            "metadata": meta,
            "hashes": {},
            "downloadUrl": url,
        }
        if primary:
            entry["primary"] = True
        self._unhashed.append(entry)
        return entry

    def _image(self, version_id: int) -> dict:
        return {
            "url": f"{IMAGES}/fakehub/{version_id}/width=512/{version_id}.jpeg",
            "nsfwLevel": 1,
            "width": 64,
            "height": 64,
            "hash": "U00000fQfQfQfQfQfQfQfQfQfQfQ",
            "type": "image",
            "meta": {"prompt": "a photo", "seed": version_id, "steps": 20, "sampler": "Euler a", "cfgScale": 7},
        }

    def _hash_pending(self) -> None:
        """Give generated files their true hashes (lazily: a big generated file is hashed only when asked)."""
        while self._unhashed:
            entry = self._unhashed.pop(0)
            computed = self.blobs[entry["id"]].hashes()
            entry["hashes"] = {name: computed[key].upper() for name, key in _HASH_NAMES.items() if computed[key]}
            version_id = next(
                (
                    v["id"]
                    for m in self.models.values()
                    for v in m["modelVersions"]
                    if any(f is entry for f in v["files"])
                ),
                None,
            )
            if version_id is None:  # an archived version lists no files, so none is found by hash
                continue
            for value in entry["hashes"].values():
                self.hashes.setdefault(value, version_id)

    # --- documents -----------------------------------------------------------------------------

    def _send(self, doc: object, status: int = 200) -> web.Response:
        text = json.dumps(doc).replace(SITE, self.hub.civitai_url).replace(IMAGES, self.hub.cdn_url + "/images")
        return web.Response(text=text, status=status, content_type="application/json")

    def version(self, version_id: int) -> dict | None:
        self._hash_pending()
        if version_id in self.recorded_versions:
            return self.recorded_versions[version_id]
        model = self.models.get(self.version_model.get(version_id, -1))
        if model is None:
            return None
        v = next(v for v in model["modelVersions"] if v["id"] == version_id)
        air_type = _AIR_TYPES.get(model["type"], "unknown")
        doc = {
            "id": version_id,
            "modelId": model["id"],
            "name": v["name"],
            "createdAt": v.get("createdAt", v["publishedAt"]),
            "updatedAt": v.get("updatedAt", v["publishedAt"]),
            "status": "Published",
            "publishedAt": v["publishedAt"],
            "trainedWords": v["trainedWords"],
            "trainingStatus": None,
            "trainingDetails": None,
            "baseModel": v["baseModel"],
            "baseModelType": v.get("baseModelType"),
            "earlyAccessEndsAt": v.get("earlyAccessDeadline"),
            "earlyAccessConfig": {"timeframe": 7, "downloadPrice": 500} if v.get("earlyAccessDeadline") else None,
            "description": v.get("description"),
            "uploadType": "Created",
            "usageControl": "Download",
            "air": f"urn:air:{_ecosystem(v['baseModel'])}:{air_type}:civitai:{model['id']}@{version_id}",
            "stats": {
                key: v["stats"].get(key, 0) for key in ("downloadCount", "ratingCount", "rating", "thumbsUpCount")
            },
            "model": {"name": model["name"], "type": model["type"], "nsfw": model["nsfw"], "poi": model["poi"]},
            "files": [{**f, "primary": bool(f.get("primary"))} for f in v["files"]],
            "images": v["images"],
            "downloadUrl": v["downloadUrl"],
        }
        if "settings" in v:
            doc["settings"] = v["settings"]
        return doc

    # --- routes --------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/models", self.list_models),
            web.get("/api/v1/models/{id}", self.get_model),
            web.get("/api/v1/model-versions/by-hash/{hash}", self.by_hash),
            web.post("/api/v1/model-versions/by-hash", self.by_hash_batch),
            web.get("/api/v1/model-versions/{id}", self.get_version),
            web.get("/api/v1/enums", self.get_enums),
            web.get("/api/download/models/{id}", self.download),
            web.get("/login", self.login),
        ]

    def _token_problem(self, request: web.Request) -> web.Response | None:
        from .server import request_token

        token = request_token(request)
        if token is not None and token not in self.hub.civitai_tokens:
            return _error(401, "Unauthorized", message="Invalid API key")
        return None

    async def list_models(self, request: web.Request) -> web.Response:
        q = request.query
        problem = self._token_problem(request)
        if problem:
            return problem
        limit_text = q.get("limit", "100")
        if not limit_text.isdigit() or not 0 <= int(limit_text) <= 100:
            return _error(
                400,
                {
                    "issues": [
                        {"code": "too_big", "path": ["limit"], "message": "Number must be less than or equal to 100"}
                    ]
                },
            )
        limit = int(limit_text) or 100
        sort = q.get("sort", "Highest Rated")
        if sort not in SORTS:
            return _error(400, {"issues": [{"code": "invalid_enum_value", "path": ["sort"], "options": list(SORTS)}]})
        period = q.get("period", "AllTime")
        if period not in PERIODS:
            return _error(
                400, {"issues": [{"code": "invalid_enum_value", "path": ["period"], "options": list(PERIODS)}]}
            )
        if "page" in q and "query" in q:
            return _error(400, "Cannot use page param with query search. Use cursor-based pagination.")
        page = int(q["page"]) if q.get("page", "").isdigit() else None
        if page is not None and page * limit > 1000:
            return _error(429, "You've requested too many pages, please use cursors instead")
        models = self._filtered(q, sort, period)
        start = (page - 1) * limit if page else int(q["cursor"]) if q.get("cursor", "").isdigit() else 0
        items = models[start : start + limit]
        metadata: dict = {}
        if start + limit < len(models):
            metadata["nextCursor"] = str(start + limit)
            metadata["nextPage"] = str(request.url.update_query(cursor=str(start + limit)))
        if page:
            metadata.update(currentPage=page, pageSize=limit)
        self._hash_pending()
        return self._send({"items": items, "metadata": metadata})

    def _filtered(self, q: MultiMapping[str], sort: str, period: str) -> list[dict]:
        query = q.get("query", "").lower()
        types = set(q.getall("types", []))
        bases = set(q.getall("baseModels", []))
        tag = q.get("tag")
        username = q.get("username")
        ids = {int(i) for i in q.get("ids", "").split(",") if i.strip().isdigit()}
        nsfw = q.get("nsfw", "false") == "true"
        days = PERIODS[period]
        since = datetime.now(timezone.utc) - timedelta(days=days) if days else None
        found = []
        for model in self.models.values():
            versions = model["modelVersions"]
            if query and query not in model["name"].lower() and not any(query in t.lower() for t in model["tags"]):
                continue
            if types and model["type"] not in types:
                continue
            if bases and not any(v["baseModel"] in bases for v in versions):
                continue
            if tag and tag.lower() not in (t.lower() for t in model["tags"]):
                continue
            if username and model["creator"]["username"].lower() != username.lower():
                continue
            if ids and model["id"] not in ids:
                continue
            if not nsfw and model["nsfw"]:
                continue
            if since and not any(_parse_time(v["publishedAt"]) >= since for v in versions):
                continue
            found.append(model)
        return sorted(found, key=_sort_key(sort), reverse=sort != "Oldest")

    async def get_model(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request)
        if problem:
            return problem
        text = request.match_info["id"]
        if not text.isdigit() or not 1 <= int(text) <= 2147483647:
            return _error(400, f"Invalid id: {text}")
        model = self.models.get(int(text))
        if model is None:
            return _error(404, f"No model with id {text}")
        self._hash_pending()
        return self._send(model)

    async def get_version(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request)
        if problem:
            return problem
        text = request.match_info["id"]
        if not text.isdigit():
            return _error(400, f"Invalid id: {text}")
        doc = self.version(int(text))
        return self._send(doc) if doc is not None else _error(404, "Model not found")

    def _by_hash(self, value: str) -> dict | None:
        self._hash_pending()
        version_id = self.hashes.get(value.strip().upper())
        return self.version(version_id) if version_id is not None else None

    async def by_hash(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request)
        if problem:
            return problem
        doc = self._by_hash(request.match_info["hash"])
        return self._send(doc) if doc is not None else _error(404, "Model not found")

    async def by_hash_batch(self, request: web.Request) -> web.Response:
        """POST a JSON array of hashes; answers the list of version documents found (unknown hashes skipped)."""
        problem = self._token_problem(request)
        if problem:
            return problem
        try:
            hashes = await request.json()
        except ValueError:
            hashes = None
        # CivitAI's own schema: array(string().refine(len == 64)).max(100) — SHA256s only, one bad element sinks all.
        if not isinstance(hashes, list) or len(hashes) > 100 or not all(_is_sha256(h) for h in hashes):
            return _error(400, "Request must include an array of SHA256 Hashes. Max 100 hashes per request.")
        docs: list[dict] = []
        for value in hashes:
            doc = self._by_hash(value)
            if doc is not None and all(d["id"] != doc["id"] for d in docs):
                docs.append(doc)
        return self._send(docs)

    async def get_enums(self, request: web.Request) -> web.Response:
        return self._send(self.enums)

    async def login(self, request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE, content_type="text/html")

    async def download(self, request: web.Request) -> web.StreamResponse:
        from .server import request_token

        browser = bool(BROWSER.search(request.headers.get("User-Agent", "")))
        text = request.match_info["id"]
        if not text.isdigit():
            return _error(400, f"Invalid id: {text}")
        version_id = int(text)
        if self.hub.faults.html_login:
            return await self.login(request)
        token = request_token(request)
        if token is not None and token not in self.hub.civitai_tokens:
            return _error(401, "Unauthorized", message="Invalid API key")
        doc = self.version(version_id)
        if doc is None:
            return web.Response(text="File not found", status=404) if browser else _error(404, "File not found")
        rules = self.rules[version_id]
        if rules.archived:
            return _error(410, "Model archived, not available for download")
        if rules.downloads_disabled:
            return _error(401, "Unauthorized", message="The creator of this asset has disabled downloads on this file")
        if rules.login_required and token is None:
            if browser:
                return web.Response(
                    status=307,
                    headers={"Location": f"/login?reason=download-auth&returnUrl=/model-versions/{version_id}"},
                )
            return _error(
                401, "Unauthorized", message="The creator of this asset requires you to be logged in to download it"
            )
        if rules.early_access and not self.hub.has_access(version_id, token):
            if browser:
                return web.Response(status=307, headers={"Location": f"/model-versions/{version_id}"})
            return _error(
                403,
                "Early Access",
                deadline=doc.get("earlyAccessEndsAt"),
                message="This asset is in Early Access. You can use Buzz access it now!",
            )
        chosen = self._choose_file(doc["files"], request.query)
        if chosen is None:
            return _error(404, "File not found")
        blob = self.blobs.get(chosen["id"])
        if blob is None:  # a recorded file: filler of the recorded size (see module docstring)
            blob = self.blobs[chosen["id"]] = GeneratedBlob(round(chosen["sizeKB"] * 1024), f"civitai-{chosen['id']}")
        filename = self.hub.faults.hostile_filename or chosen["name"]
        location = self.hub.signed_url(f"civitai-{chosen['id']}", StoredObject(blob, filename))
        return web.Response(status=307, headers={"Location": location, "Cache-Control": "no-store, max-age=0"})

    def _choose_file(self, files: list[dict], query: MultiMapping[str]) -> dict | None:
        file_id = query.get("fileId")
        if file_id:
            return next((f for f in files if str(f["id"]) == file_id), None)
        wanted = {key: query.get(key) for key in ("type", "format", "size", "fp") if query.get(key)}
        if not wanted:
            return next((f for f in files if f.get("primary")), files[0] if files else None)
        for f in files:
            have = {"type": f.get("type"), **(f.get("metadata") or {})}
            if all(have.get(key) == value for key, value in wanted.items()):
                return f
        return None

    async def image(self, request: web.Request) -> web.Response:
        """Any /images/... path on the CDN answers a tiny real JPEG (preview downloads), or the body
        ``image_bodies`` holds for that path."""
        body = self.image_bodies.get(request.path)
        if body is not None:
            return web.Response(body=body, content_type="application/octet-stream")
        return web.Response(body=_tiny_jpeg(), content_type="image/jpeg")


def _sort_key(sort: str) -> object:
    def stat(name: str) -> object:
        return lambda m: (m["stats"].get(name) or 0, m["id"])

    def newest(m: dict) -> object:
        return (max(_parse_time(v["publishedAt"]) for v in m["modelVersions"]), m["id"])

    return {
        "Highest Rated": stat("thumbsUpCount"),
        "Most Downloaded": stat("downloadCount"),
        "Most Liked": stat("thumbsUpCount"),
        "Most Discussed": stat("commentCount"),
        "Most Collected": stat("favoriteCount"),
        "Most Images": lambda m: (sum(len(v["images"]) for v in m["modelVersions"]), m["id"]),
        "Newest": newest,
        "Oldest": newest,
    }[sort]


_JPEG: list[bytes] = []


def _tiny_jpeg() -> bytes:
    if not _JPEG:
        import io

        from PIL import Image

        out = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 120, 40)).save(out, "JPEG")
        _JPEG.append(out.getvalue())
    return _JPEG[0]


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)
