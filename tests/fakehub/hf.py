"""HuggingFace Hub imitation, enough for the unmodified huggingface_hub client (0.26 and 2.x).

Serves ``/api/models`` (search, filter, author, pipeline_tag, sort, limit, full/cardData/expand,
``Link: rel="next"`` paging), ``/api/models/{repo}[/revision/{rev}]``, ``/api/models/{repo}/tree/{rev}``
and ``HEAD|GET /{repo}/resolve/{rev}/{path}``: small git files directly (``ETag: "<git sha1>"``), LFS
files as ``302`` to a signed URL on the CDN host (``X-Linked-Etag: "<sha256>"``, ``X-Linked-Size``).
Errors carry ``X-Error-Code`` exactly as the Hub does (see reference/huggingface.md §4.6). Never
sends Xet headers, so the client stays on plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from aiohttp import web

from .bodies import send_blob
from .storage import Blob, StoredObject, make_blob

if TYPE_CHECKING:
    from .server import FakeHub

LFS_SUFFIXES = {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack", ".pkl", ".zip"}
LFS_MIN_SIZE = 10 * 1024 * 1024  # bigger files are LFS whatever their name (.gitattributes does that on the Hub)
GATE_EXEMPT = {"README.md", ".gitattributes"}  # readable without accepting a gated repo's terms
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
_SORT_KEYS = {"downloads", "likes", "createdAt", "lastModified", "trendingScore", "created_at", "last_modified"}
_COMMON = {"Access-Control-Expose-Headers": "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,ETag,Link"}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class HfFile:
    path: str
    blob: Blob
    lfs: bool

    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.blob.sha256}\nsize {self.blob.size}\n".encode()

    @property
    def oid(self) -> str:
        """The git blob id: of the LFS pointer for LFS files, of the content otherwise."""
        if self.lfs:
            pointer = self.pointer()
            return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
        return self.blob.hashes()["sha1_git"]


@dataclass
class HfCommit:
    sha: str
    files: dict[str, HfFile]
    date: str


@dataclass
class HfRepo:
    id: str
    gated: bool | str
    private: bool
    tags: list[str]
    pipeline_tag: str | None
    library_name: str | None
    card_data: dict | None
    downloads: int
    likes: int
    created_at: str
    last_modified: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    commits: dict[str, HfCommit] = field(default_factory=dict)

    @property
    def author(self) -> str | None:
        return self.id.split("/")[0] if "/" in self.id else None

    def commit(self, revision: str) -> HfCommit | None:
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)


class HfError(Exception):
    """An error answer in the Hub's format: ``X-Error-Code``/``X-Error-Message`` headers and ``{"error": ...}``."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> web.Response:
        headers = {**_COMMON, "X-Error-Message": self.message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return web.json_response({"error": self.message}, status=self.status, headers=headers)


class HfCatalog:
    """The repos of the fake Hub. ``page_size``/``tree_page_size`` are small-able to exercise paging."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.repos: dict[str, HfRepo] = {}
        self.renames: dict[str, str] = {}
        self.page_size = 1000
        self.tree_page_size = 1000

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | object] | None = None,
        *,
        gated: bool | str = False,
        private: bool = False,
        tags: list[str] | None = None,
        pipeline_tag: str | None = None,
        library_name: str | None = None,
        card_data: dict | None = None,
        downloads: int = 0,
        likes: int = 0,
        created_at: str | None = None,
        last_modified: str | None = None,
        revision: str = "main",
        branches: list[str] | None = None,
        lfs: set[str] | None = None,
    ) -> str:
        """Add a model repo (or, for an existing ``repo_id``, a new commit on ``revision``); returns the commit sha.

        ``files`` maps paths to bytes, a Path, or ``("generated", size)`` (streamed, hashed lazily).
        LFS files are the model-like suffixes, anything over 10 MiB, and paths listed in ``lfs``.
        ``gated``: False, True (= "manual") or "auto"; access is given with ``hub.grant(repo_id, token)``.
        ``branches``: more branch names pointing at the same commit. The sha is deterministic.
        For an existing repo only ``files``, ``revision`` and ``branches`` are used.
        """
        files = files or {}
        blobs = {path.lstrip("/"): make_blob(body, seed=f"{repo_id}/{path}") for path, body in files.items()}
        identity = "\0".join([repo_id, revision] + [f"{p}\0{b.key}" for p, b in sorted(blobs.items())])
        sha = hashlib.sha1(identity.encode()).hexdigest()
        repo = self.repos.get(repo_id)
        if repo is None:
            created = created_at or _iso(_EPOCH + timedelta(minutes=len(self.repos)))
            all_tags = list(tags or [])
            if library_name and library_name not in all_tags:
                all_tags.insert(0, library_name)
            repo = HfRepo(
                id=repo_id,
                gated="manual" if gated is True else gated,
                private=private,
                tags=all_tags,
                pipeline_tag=pipeline_tag,
                library_name=library_name,
                card_data=card_data,
                downloads=downloads,
                likes=likes,
                created_at=created,
                last_modified=last_modified or created,
            )
            self.repos[repo_id] = repo
        lfs = lfs or set()
        hf_files = {
            path: HfFile(
                path, blob, PurePosixPath(path).suffix in LFS_SUFFIXES or blob.size > LFS_MIN_SIZE or path in lfs
            )
            for path, blob in blobs.items()
        }
        repo.commits[sha] = HfCommit(sha, hf_files, repo.last_modified)
        for name in [revision, *(branches or [])]:
            repo.branches[name] = sha
        return sha

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/models", self.list_models), web.route("*", "/{tail:.*}", self.dispatch)]

    # --- access --------------------------------------------------------------------------------

    def _token(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _token_is_valid(self, token: str) -> bool:
        return token in self.hub.valid_hf_tokens or any(token in granted for granted in self.hub.grants.values())

    def _check_token(self, request: web.Request) -> str | None:
        token = self._token(request)
        if token is not None and not self._token_is_valid(token):
            raise HfError(401, None, "Invalid credentials in Authorization header")
        return token

    def _repo(self, repo_id: str, token: str | None) -> HfRepo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self.hub.has_access(repo_id, token)):
            raise HfError(404 if token else 401, "RepoNotFound", "Repository not found")
        return repo

    def _check_gate(self, repo: HfRepo, token: str | None, path: str) -> None:
        if not repo.gated or path in GATE_EXEMPT or self.hub.has_access(repo.id, token):
            return
        if token is None:
            message = (
                f"Access to model {repo.id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in."
            )
            raise HfError(401, "GatedRepo", message)
        message = (
            f"Access to model {repo.id} is restricted and you are not in the authorized list. "
            f"Visit https://huggingface.co/{repo.id} to ask for access."
        )
        raise HfError(403, "GatedRepo", message)

    def _commit(self, repo: HfRepo, revision: str) -> HfCommit:
        commit = repo.commit(revision)
        if commit is None:
            raise HfError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _visible(self, repo: HfRepo, token: str | None) -> bool:
        return not repo.private or self.hub.has_access(repo.id, token)

    # --- documents -----------------------------------------------------------------------------

    def _sibling(self, f: HfFile, blobs: bool) -> dict:
        entry: dict = {"rfilename": f.path}
        if blobs:
            entry.update(size=f.blob.size, blobId=f.oid)
            if f.lfs:
                entry["lfs"] = {"size": f.blob.size, "sha256": f.blob.sha256, "pointerSize": len(f.pointer())}
        return entry

    def _safetensors(self, commit: HfCommit) -> dict | None:
        counts: Counter[str] = Counter()
        for f in commit.files.values():
            if not f.path.endswith(".safetensors"):
                continue
            for name, info in (f.blob.safetensors_header() or {}).items():
                if name != "__metadata__" and isinstance(info, dict):
                    n = 1
                    for dim in info.get("shape", []):
                        n *= dim
                    counts[info.get("dtype", "F32")] += n
        return {"parameters": dict(counts), "total": sum(counts.values())} if counts else None

    def model_doc(self, repo: HfRepo, commit: HfCommit, *, blobs: bool = False) -> dict:
        """The full ``model_info`` document (shape of the recorded google-bert/bert-base-uncased answer)."""
        doc: dict = {
            "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "private": repo.private,
            "pipeline_tag": repo.pipeline_tag,
            "library_name": repo.library_name,
            "tags": repo.tags,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "modelId": repo.id,
            "author": repo.author,
            "sha": commit.sha,
            "lastModified": repo.last_modified,
            "gated": repo.gated,
            "disabled": False,
            "cardData": repo.card_data,
            "siblings": [self._sibling(f, blobs) for f in sorted(commit.files.values(), key=lambda f: f.path)],
            "spaces": [],
            "createdAt": repo.created_at,
            "usedStorage": sum(f.blob.size for f in commit.files.values()),
        }
        if repo.card_data is None:
            del doc["cardData"]
        safetensors = self._safetensors(commit)
        if safetensors:
            doc["safetensors"] = safetensors
        return doc

    def _expanded(self, repo: HfRepo, commit: HfCommit, expand: list[str]) -> dict:
        full = self.model_doc(repo, commit)
        doc = {"_id": full["_id"], "id": repo.id}
        doc.update({key: full[key] for key in expand if key in full})
        return doc

    def _list_item(self, repo: HfRepo, query: web.Request) -> dict:
        commit = self._commit(repo, "main") if "main" in repo.branches else next(iter(repo.commits.values()))
        params = query.query
        expand = params.getall("expand", [])
        if expand:
            return self._expanded(repo, commit, expand)
        full = self.model_doc(repo, commit)
        keys = ["_id", "id", "likes", "private", "downloads", "tags", "pipeline_tag", "library_name", "createdAt"]
        if params.get("full") in ("true", "True", "1"):
            keys += ["author", "sha", "lastModified", "gated", "disabled", "siblings"]
        if params.get("cardData") in ("true", "True", "1"):
            keys.append("cardData")
        item = {key: full[key] for key in keys if key in full}
        item["modelId"] = repo.id
        if params.get("config") in ("true", "True", "1"):
            item["config"] = {}
        return item

    # --- routes --------------------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        try:
            token = self._check_token(request)
        except HfError as error:
            return error.response()
        q = request.query
        repos = [r for r in self.repos.values() if self._visible(r, token)]
        if q.get("search"):
            needle = q["search"].lower()
            repos = [r for r in repos if needle in r.id.lower()]
        if q.get("author"):
            repos = [r for r in repos if r.author == q["author"]]
        for wanted in q.getall("filter", []):
            repos = [r for r in repos if wanted in {*r.tags, r.library_name, r.pipeline_tag, r.id}]
        if q.get("pipeline_tag"):
            repos = [r for r in repos if r.pipeline_tag == q["pipeline_tag"]]
        if q.get("gated") in ("true", "false"):
            repos = [r for r in repos if bool(r.gated) == (q["gated"] == "true")]
        sort = q.get("sort")
        if sort:
            if sort not in _SORT_KEYS:
                return HfError(400, None, f"Invalid sort parameter: {sort}").response()
            attr = {"createdAt": "created_at", "lastModified": "last_modified", "trendingScore": "likes"}.get(
                sort, sort
            )
            repos.sort(key=lambda r: getattr(r, attr), reverse=True)
        limit = int(q["limit"]) if q.get("limit", "").isdigit() else None
        page = min(limit or self.page_size, self.page_size)
        items = [self._list_item(r, request) for r in repos]
        return self._paged(request, items, page)

    def _paged(self, request: web.Request, items: list, page: int) -> web.Response:
        start = _decode_cursor(request.query.get("cursor"))
        chunk = items[start : start + page]
        headers = dict(_COMMON)
        if start + page < len(items):
            next_url = request.url.update_query(cursor=_encode_cursor(start + page))
            headers["Link"] = f'<{next_url}>; rel="next"'
        return web.json_response(chunk, headers=headers)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [unquote(p) for p in request.raw_path.split("?", 1)[0].split("/")[1:]]
        try:
            if parts[:2] == ["api", "models"] and len(parts) > 2:
                return await self._api(request, parts[2:])
            if len(parts) >= 4 and parts[2] == "resolve":
                return await self._resolve(request, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            if len(parts) >= 3 and parts[1] == "resolve":
                return await self._resolve(request, parts[0], parts[2], "/".join(parts[3:]))
        except HfError as error:
            return error.response()
        return web.json_response({"error": "Sorry, we can't find the page you are looking for."}, status=404)

    def _split_repo(self, parts: list[str]) -> tuple[str, list[str]]:
        """``org/name/...`` or the legacy org-less ``name/...``."""
        if len(parts) >= 2 and (len(parts) == 2 or parts[2] in ("revision", "tree")):
            return f"{parts[0]}/{parts[1]}", parts[2:]
        return parts[0], parts[1:]

    def _renamed(self, request: web.Request, old: str) -> web.Response | None:
        new = self.renames.get(old)
        if new is None:
            return None
        raw = request.raw_path
        location = raw.replace(quote(old, safe="/"), quote(new, safe="/"), 1)
        return web.Response(
            status=307,
            text=f"Temporary Redirect. Redirecting to {location}",
            headers={**_COMMON, "Location": location},
        )

    async def _api(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        repo_id, rest = self._split_repo(parts)
        redirect = self._renamed(request, repo_id)
        if redirect is not None:
            return redirect
        token = self._check_token(request)
        repo = self._repo(repo_id, token)
        if not rest:
            commit = self._commit(repo, "main")
        elif rest[0] == "revision" and len(rest) >= 2:
            commit = self._commit(repo, "/".join(rest[1:]))
        elif rest[0] == "tree" and len(rest) >= 2:
            return self._tree(request, repo, self._commit(repo, rest[1]), "/".join(rest[2:]))
        else:
            raise HfError(404, None, "Not Found")
        expand = request.query.getall("expand", [])
        if expand:
            return web.json_response(self._expanded(repo, commit, expand), headers=_COMMON)
        blobs = request.query.get("blobs") in ("true", "True", "1")
        return web.json_response(self.model_doc(repo, commit, blobs=blobs), headers=_COMMON)

    def _tree(self, request: web.Request, repo: HfRepo, commit: HfCommit, path: str) -> web.Response:
        recursive = request.query.get("recursive") in ("true", "True", "1")
        expand = request.query.get("expand") in ("true", "True", "1")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and prefix[:-1] in commit.files:
            raise HfError(400, None, f"{path} is a file, not a directory")
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise HfError(404, "EntryNotFound", f"{path} does not exist on {commit.sha}")
        directories: set[str] = set()
        files: list[HfFile] = []
        for f in commit.files.values():
            if not f.path.startswith(prefix):
                continue
            below = f.path[len(prefix) :].split("/")
            for depth in range(1, len(below)):
                if recursive or depth == 1:
                    directories.add(prefix + "/".join(below[:depth]))
            if recursive or len(below) == 1:
                files.append(f)
        entries = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in directories
        ]
        for f in files:
            entry: dict = {"type": "file", "oid": f.oid, "size": f.blob.size, "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.blob.sha256, "size": f.blob.size, "pointerSize": len(f.pointer())}
            if expand:
                entry["lastCommit"] = {"id": commit.sha, "title": "Upload", "date": commit.date}
            entries.append(entry)
        entries.sort(key=lambda e: e["path"])
        return self._paged(request, entries, min(self.tree_page_size, 50) if expand else self.tree_page_size)

    async def _resolve(self, request: web.Request, repo_id: str, revision: str, path: str) -> web.StreamResponse:
        redirect = self._renamed(request, repo_id)
        if redirect is not None:
            return redirect
        token = self._check_token(request)
        repo = self._repo(repo_id, token)
        self._check_gate(repo, token, path)
        commit = self._commit(repo, revision)
        f = commit.files.get(path)
        if f is None:
            raise HfError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit.sha})
        headers = {**_COMMON, "X-Repo-Commit": commit.sha}
        if not f.lfs:
            return await send_blob(self.hub, request, f.blob, etag=f'"{f.oid}"', headers=headers)
        sha256 = f.blob.sha256
        location = self.hub.signed_url(
            f"hf-{f.blob.key}", StoredObject(f.blob, PurePosixPath(path).name, etag=f'"{sha256}"')
        )
        headers.update(
            {
                "Location": location,
                "ETag": f'"{f.oid}"',
                "X-Linked-Etag": f'"{sha256}"',
                "X-Linked-Size": str(f.blob.size),
            }
        )
        return web.Response(status=302, headers=headers)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f'{{"offset":{offset}}}'.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return max(0, int(text.split(":", 1)[1].rstrip("}")))
    except (ValueError, IndexError):
        return 0
