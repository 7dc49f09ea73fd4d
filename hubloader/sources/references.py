"""Every way a user names a model, parsed into one small value: :class:`ModelRef`.

Pure functions: no network, no files. The only outside input is the configured HuggingFace and
CivitAI endpoints (read at call time when not passed), so URLs of a mirror or of the test server
are recognised like the real hosts.

Accepted forms (see :func:`parse_reference`):

* CivitAI: ``civitai:MODEL``, ``civitai:MODEL@VERSION``, ``civitai:@VERSION``; AIR
  ``urn:air:sdxl:lora:civitai:12345@67890`` (optional ``.format`` and ``+fileId``); page URLs
  ``/models/12345[/slug][?modelVersionId=67890]`` and ``/model-versions/67890``; download URLs
  ``/api/download/models/67890[?type=..&format=..&size=..&fp=..&fileId=..]``; API URLs
  ``/api/v1/models/12345``, ``/api/v1/model-versions/67890``, ``/api/v1/model-versions/by-hash/<hash>``.
* HuggingFace: ``owner/repo``, ``owner/repo/path/in/repo.safetensors``, ``owner/repo@rev[/file]``
  (``@refs/pr/N`` too), ``hf:owner/repo…``; ``/resolve/`` and ``/blob/`` URLs (a blob URL is read
  as its resolve URL) on huggingface.co, hf.co or the ``HF_ENDPOINT`` host, ``/datasets/`` and
  ``/spaces/`` included; AIR ``urn:air:sdxl:vae:huggingface:owner/repo@rev``.
* Hashes: 64 hex (SHA256, or BLAKE3), 12 hex (AutoV3), 10 hex (AutoV2), 8 hex (AutoV1 or CRC32:
  ambiguous, both are tried); optionally prefixed ``sha256:``, ``autov2:`` … to say which.

The CivitAI model id scheme used across Hubloader is ``civitai:<modelId>@<versionId>``
(:func:`civitai_id`); it parses back with :func:`parse_reference`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from hubloader.core.errors import InvalidReference
from hubloader.core.metadata import BaseModel, ModelType, Source
from hubloader.core.settings import (
    DEFAULT_CIVITAI_ENDPOINT,
    DEFAULT_HF_ENDPOINT,
    civitai_endpoint,
    hf_endpoint,
    redact_url,
)

CIVITAI = "civitai"
HUGGINGFACE = "huggingface"
HASH = "hash"

#: Hosts that are CivitAI whatever the configured endpoint (its SFW/NSFW mirrors and API host included).
CIVITAI_HOSTS = frozenset({"civitai.com", "www.civitai.com", "api.civitai.com", "civitai.green", "civitai.red"})
HF_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})

#: Hash names by hex length. 8 hex is either A1111's legacy AutoV1 or a CRC32: CivitAI matches both.
HASH_TYPES_BY_LENGTH: dict[int, tuple[str, ...]] = {
    64: ("SHA256", "BLAKE3"),
    12: ("AutoV3",),
    10: ("AutoV2",),
    8: ("AutoV1", "CRC32"),
}
#: Hash names by their lower-case spelling (``sha256`` → ``SHA256``).
HASH_NAMES = {name.lower(): name for names in HASH_TYPES_BY_LENGTH.values() for name in names}
_HEX = re.compile(r"[0-9a-fA-F]+")

#: CivitAI download-route selectors (``/api/download/models/V?type=..``) worth keeping on a reference.
DOWNLOAD_PARAMS = ("type", "format", "size", "fp", "quantType")

# AIR: urn:air:{ecosystem}:{type}:{source}:{id}[@{version}][.{format}][+{fileId}]; "urn:" and "air:" optional.
_AIR = re.compile(
    r"^(?:urn:)?(?:air:)?(?P<ecosystem>[a-z0-9_.\-]+):(?P<type>[a-z0-9_\-]+):(?P<source>[a-z0-9_\-]+):"
    r"(?P<id>[^@+\s]+?)(?:@(?P<version>[^+\s]+?))?(?:\+(?P<file>\d+))?$",
    re.IGNORECASE,
)
#: AIR formats; only these are split off a version, so a revision like ``v1.0`` stays whole.
AIR_FORMATS = frozenset({"safetensors", "ckpt", "pt", "bin", "gguf", "onnx", "diffusers", "pickletensor", "zip"})

#: AIR type → our ModelType (CivitAI's ``typeUrnMap`` read backwards, plus the newer kinds).
AIR_TYPES: dict[str, ModelType] = {
    "checkpoint": ModelType.BASE_MODEL,
    "lora": ModelType.LORA,
    "dora": ModelType.LORA,
    "lycoris": ModelType.LYCORIS,
    "embedding": ModelType.EMBEDDING,
    "vae": ModelType.VAE,
    "controlnet": ModelType.CONTROLNET,
    "upscaler": ModelType.UPSCALER,
    "hypernet": ModelType.HYPERNETWORK,
    "text_encoders": ModelType.TEXT_ENCODER,
    "clip": ModelType.TEXT_ENCODER,
    "unet": ModelType.DIFFUSION_MODEL,
    "diffusionmodel": ModelType.DIFFUSION_MODEL,
    "clipvision": ModelType.CLIP_VISION,
}
#: AIR ecosystem (CivitAI's root-ecosystem key) → our BaseModel.
AIR_ECOSYSTEMS: dict[str, BaseModel] = {
    "sd1": BaseModel.SD15,
    "sd2": BaseModel.SD2,
    "sdxl": BaseModel.SDXL,
    "pony": BaseModel.PONY,
    "illustrious": BaseModel.ILLUSTRIOUS,
    "noobai": BaseModel.NOOBAI,
    "sd3": BaseModel.SD3,
    "sd3_5m": BaseModel.SD35,
    "sd3_5": BaseModel.SD35,
    "sd3_5l": BaseModel.SD35,
    "flux1": BaseModel.FLUX1,
    "flux2": BaseModel.FLUX2,
    "other": BaseModel.OTHER,
}

_HF_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._\-]*[A-Za-z0-9_\-])?$")
_HF_REPO_TYPES = {"datasets": "dataset", "spaces": "space"}
_MAX_HF_NAME = 96


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference. ``kind`` says which group of fields is filled in.

    ``text`` is what the user wrote with any token or signature redacted, safe to print.
    """

    kind: str  # CIVITAI | HUGGINGFACE | HASH
    text: str = ""
    # CivitAI
    model_id: int | None = None
    version_id: int | None = None
    file_id: int | None = None
    download_params: tuple[tuple[str, str], ...] = ()  # type/format/size/fp selectors of a download URL
    # HuggingFace
    repo_id: str | None = None
    repo_type: str = "model"
    revision: str | None = None
    filename: str | None = None
    # Hash
    hash: str | None = None  # lower-case hex
    hash_types: tuple[str, ...] = ()  # candidate CivitAI names, e.g. ("AutoV1", "CRC32")
    # From an AIR
    ecosystem: str | None = None
    air_type: str | None = None
    format: str | None = None

    @property
    def source(self) -> Source | None:
        """CIVITAI or HUGGINGFACE; None for a bare hash (any source may know it)."""
        return {CIVITAI: Source.CIVITAI, HUGGINGFACE: Source.HUGGINGFACE}.get(self.kind)

    @property
    def model_type(self) -> ModelType | None:
        """The type an AIR states, if any."""
        return AIR_TYPES.get((self.air_type or "").lower())

    @property
    def base_model(self) -> BaseModel | None:
        """The base an AIR's ecosystem states, if any."""
        return AIR_ECOSYSTEMS.get((self.ecosystem or "").lower())

    def __str__(self) -> str:
        """A canonical spelling that parses back to an equal reference (AIR extras and owner-less repos aside)."""
        if self.kind == CIVITAI:
            return civitai_id(self.model_id, self.version_id)
        if self.kind == HUGGINGFACE:
            prefix = "" if self.repo_type == "model" else f"hf:{self.repo_type}s/"
            rev = f"@{self.revision}" if self.revision else ""
            file = f"/{self.filename}" if self.filename else ""
            return f"{prefix}{self.repo_id}{rev}{file}"
        return self.hash or ""


def civitai_id(model_id: int | str | None, version_id: int | str | None = None) -> str:
    """Hubloader's id for a CivitAI model version: ``civitai:<modelId>@<versionId>``.

    Every :class:`~hubloader.core.metadata.ModelMetadata` from CivitAI carries this as ``model_id``; the model
    alone is ``civitai:<modelId>`` and a version whose model is unknown ``civitai:@<versionId>``.
    """
    model = "" if model_id is None else str(model_id)
    return f"civitai:{model}@{version_id}" if version_id is not None else f"civitai:{model}"


def format_air(ecosystem: str, air_type: str, source: str, resource_id: str | int, version: str | int | None) -> str:
    """``urn:air:{ecosystem}:{type}:{source}:{id}[@{version}]``."""
    tail = f"@{version}" if version not in (None, "") else ""
    return f"urn:air:{ecosystem}:{air_type}:{source}:{resource_id}{tail}"


def parse_reference(text: str, *, hf_host: str | None = None, civitai_host: str | None = None) -> ModelRef:
    """Parse anything a user may type or paste to name a model.

    ``hf_host``/``civitai_host`` are extra endpoints whose URLs count as HuggingFace/CivitAI; by
    default the configured ``HF_ENDPOINT`` and ``CIVITAI_ENDPOINT``. Raises InvalidReference.
    """
    raw = str(text or "").strip()
    if not raw:
        raise InvalidReference("Empty model reference.")
    lowered = raw.lower()
    if lowered.startswith(("urn:air:", "air:")):
        return parse_air(raw)
    if lowered.startswith("civitai:"):
        return _parse_civitai_id(raw)
    if lowered.startswith(("hf:", "huggingface:")):
        return parse_hf_path(raw.split(":", 1)[1], text=raw)
    if "://" in raw:
        return parse_url(raw, hf_host=hf_host, civitai_host=civitai_host)
    if _looks_like_hash(raw):
        return parse_hash(raw)
    if "/" in raw:
        return parse_hf_path(raw)
    if raw.isdigit():
        raise InvalidReference(
            f"{raw!r} is a bare number: say which source it belongs to.",
            hint=f"For a CivitAI model write civitai:{raw} (or civitai:{raw}@VERSION).",
        )
    raise InvalidReference(f"Cannot tell what model {raw!r} names.")


class _AirFields(TypedDict):
    """What an AIR says besides the resource: its ecosystem, type and format."""

    ecosystem: str
    air_type: str
    format: str | None


def parse_air(text: str) -> ModelRef:
    """``urn:air:{ecosystem}:{type}:{source}:{id}[@{version}][.{format}][+{fileId}]``."""
    raw = str(text).strip()
    match = _AIR.match(raw)
    if not match:
        raise InvalidReference(
            f"{raw!r} is not a valid AIR.", hint="Expected urn:air:{ecosystem}:{type}:{source}:{id}@{version}."
        )
    ecosystem, air_type, source = (match[name].lower() for name in ("ecosystem", "type", "source"))
    resource_id, version, file_id = match["id"], match["version"], match["file"]
    version, fmt = _split_format(version) if version else (None, None)
    if not version:
        resource_id, fmt = _split_format(resource_id)
    air = _AirFields(ecosystem=ecosystem, air_type=air_type, format=fmt)
    if source == CIVITAI:
        if not resource_id.isdigit() or (version is not None and not version.isdigit()):
            raise InvalidReference(
                f"{raw!r}: a CivitAI AIR needs numeric ids, as in urn:air:sdxl:lora:civitai:12345@67890."
            )
        return ModelRef(
            CIVITAI,
            text=raw,
            model_id=int(resource_id),
            version_id=int(version) if version else None,
            file_id=int(file_id) if file_id else None,
            **air,
        )
    if source == HUGGINGFACE:
        if file_id:
            raise InvalidReference(f"{raw!r}: +fileId only exists for CivitAI resources.")
        ref = parse_hf_path(resource_id, text=raw)
        return ModelRef(HUGGINGFACE, text=raw, repo_id=ref.repo_id, revision=version, filename=ref.filename, **air)
    raise InvalidReference(f"{raw!r}: AIR source {source!r} is not supported.", hint="Use civitai or huggingface.")


def _split_format(value: str) -> tuple[str, str | None]:
    stem, dot, suffix = value.rpartition(".")
    if dot and stem and suffix.lower() in AIR_FORMATS:
        return stem, suffix.lower()
    return value, None


def _parse_civitai_id(text: str) -> ModelRef:
    """``civitai:MODEL``, ``civitai:MODEL@VERSION`` or ``civitai:@VERSION``."""
    body = text.split(":", 1)[1].strip()
    match = re.fullmatch(r"(\d*)(?:@(\d+))?", body)
    if not match or not (match[1] or match[2]):
        raise InvalidReference(
            f"{text!r} is not a CivitAI id.", hint="Write civitai:MODEL or civitai:MODEL@VERSION (numbers)."
        )
    return ModelRef(
        CIVITAI,
        text=text,
        model_id=int(match[1]) if match[1] else None,
        version_id=int(match[2]) if match[2] else None,
    )


def parse_hash(text: str) -> ModelRef:
    """A hex digest, optionally ``name:``-prefixed (``sha256:…``, ``autov2:…``) to pick among candidates."""
    raw = str(text).strip()
    name, _, digest = raw.rpartition(":")
    candidates = HASH_TYPES_BY_LENGTH.get(len(digest), ())
    if not _HEX.fullmatch(digest) or not candidates:
        raise InvalidReference(
            f"{raw!r} is not a model hash.",
            hint="Give 64 hex (SHA256), 12 (AutoV3), 10 (AutoV2) or 8 (AutoV1/CRC32) characters.",
        )
    if name:
        chosen = HASH_NAMES.get(name.lower())
        if chosen not in candidates:
            raise InvalidReference(f"{raw!r}: a {name} hash is not {len(digest)} hex characters long.")
        candidates = (chosen,)
    return ModelRef(HASH, text=raw, hash=digest.lower(), hash_types=candidates)


def _looks_like_hash(text: str) -> bool:
    name, _, digest = text.rpartition(":")
    return (
        (not name or name.lower() in HASH_NAMES)
        and bool(_HEX.fullmatch(digest))
        and len(digest) in HASH_TYPES_BY_LENGTH
    )


def parse_hf_path(path: str, *, text: str | None = None) -> ModelRef:
    """``[datasets/|spaces/]owner/repo[@rev][/path/in/repo]`` — the HuggingFace short form."""
    shown = text or path
    path = path.strip().strip("/")
    repo_type = "model"
    head, _, rest = path.partition("/")
    if head in _HF_REPO_TYPES and rest:
        repo_type, path = _HF_REPO_TYPES[head], rest
    parts = path.split("/")
    if len(parts) < 2:
        raise InvalidReference(f"{shown!r} is not owner/repo.", hint="Write owner/repo or owner/repo/file.safetensors.")
    owner, repo = parts[0], parts[1]
    rest_parts = parts[2:]
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        if revision == "refs" and rest_parts[:1] == ["pr"] and len(rest_parts) >= 2:
            revision, rest_parts = f"refs/pr/{rest_parts[1]}", rest_parts[2:]
        if not revision:
            raise InvalidReference(f"{shown!r}: empty revision after '@'.")
    repo_id = _check_repo_id(owner, repo, shown)
    return ModelRef(
        HUGGINGFACE,
        text=shown,
        repo_id=repo_id,
        repo_type=repo_type,
        revision=revision,
        filename=_check_repo_path("/".join(rest_parts), shown) if rest_parts else None,
    )


def _check_repo_id(owner: str, repo: str, shown: str) -> str:
    for name in (owner, repo):
        if not _HF_NAME.match(name) or len(name) > _MAX_HF_NAME or "--" in name or ".." in name:
            raise InvalidReference(
                f"{shown!r}: {name!r} is not a valid HuggingFace user or repository name.",
                hint="Names use letters, digits, '-', '_' and '.', and do not contain '--' or '..'.",
            )
    return f"{owner}/{repo}"


def _check_repo_path(path: str, shown: str) -> str:
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments) or "\\" in path or "\x00" in path:
        raise InvalidReference(f"{shown!r}: {path!r} is not a valid file path inside a repository.")
    return path


def parse_url(url: str, *, hf_host: str | None = None, civitai_host: str | None = None) -> ModelRef:
    """A CivitAI or HuggingFace URL (also the configured endpoints' own hosts)."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise InvalidReference(f"{shown!r} is not a URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidReference(f"{shown!r} is not an http(s) URL.")
    host = _netloc(url)
    civitai_hosts = CIVITAI_HOSTS | {_netloc(civitai_host or civitai_endpoint())}
    hf_hosts = HF_HOSTS | {_netloc(hf_host or hf_endpoint())}
    path = parts.path
    # CivitAI's path shapes never collide with HuggingFace's (/resolve/, /blob/), so when a mirror or the
    # test server serves both on one host, trying CivitAI first is safe.
    if host in civitai_hosts:
        ref = _civitai_url(path, parts.query, shown)
        if ref is not None:
            return ref
    if host in hf_hosts:
        return _hf_url(_strip_endpoint_path(path, hf_host or hf_endpoint()), shown)
    raise InvalidReference(
        f"{shown!r} is neither a CivitAI nor a HuggingFace URL.",
        hint="Only CivitAI and HuggingFace URLs name a model; a plain file URL does not.",
    )


def _netloc(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"//{url}")
    host = (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default_port) else f"{host}:{parts.port}"


def _strip_endpoint_path(path: str, endpoint: str) -> str:
    """A mirror may live under a path prefix (``https://host/hf``); drop it."""
    prefix = urlsplit(endpoint).path.rstrip("/")
    return path[len(prefix) :] if prefix and path.startswith(prefix + "/") else path


def _civitai_url(path: str, query: str, shown: str) -> ModelRef | None:
    params = dict(parse_qsl(query))
    segments = [unquote(s) for s in path.strip("/").split("/") if s]
    if segments[:2] == ["api", "v1"]:
        segments = segments[2:]
    elif segments[:1] == ["api"]:
        segments = segments[1:]
    if not segments:
        return None
    head = segments[0]
    if head == "models" and len(segments) >= 2:
        model_id = _int(segments[1], shown)
        version = params.get("modelVersionId")
        return ModelRef(CIVITAI, text=shown, model_id=model_id, version_id=_int(version, shown) if version else None)
    if head == "model-versions" and len(segments) >= 2:
        if segments[1] == "by-hash" and len(segments) == 3:
            return parse_hash(segments[2])
        return ModelRef(CIVITAI, text=shown, version_id=_int(segments[1], shown))
    if head == "download" and segments[1:2] == ["models"] and len(segments) == 3:
        file_id = params.get("fileId")
        return ModelRef(
            CIVITAI,
            text=shown,
            version_id=_int(segments[2], shown),
            file_id=_int(file_id, shown) if file_id else None,
            download_params=tuple((k, params[k]) for k in DOWNLOAD_PARAMS if params.get(k)),
        )
    return None


def _int(value: str, shown: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise InvalidReference(f"{shown!r}: {value!r} is not a CivitAI id (a positive number).")
    return int(value)


def _hf_url(path: str, shown: str) -> ModelRef:
    segments = [unquote(s) for s in path.strip("/").split("/") if s]
    repo_type = "model"
    if segments[:1] and segments[0] in _HF_REPO_TYPES:
        repo_type, segments = _HF_REPO_TYPES[segments[0]], segments[1:]
    # Legacy repos have no owner (huggingface.co/gpt2/resolve/main/…): the action word is then second.
    owner_less = len(segments) >= 2 and segments[1] in ("resolve", "blob", "tree")
    repo_parts, rest = (segments[:1], segments[1:]) if owner_less else (segments[:2], segments[2:])
    if len(repo_parts) == 1 and owner_less:
        if not _HF_NAME.match(repo_parts[0]):
            raise InvalidReference(f"{shown!r}: {repo_parts[0]!r} is not a valid repository name.")
        repo_id = repo_parts[0]
    elif len(repo_parts) == 2:
        repo_id = _check_repo_id(repo_parts[0], repo_parts[1], shown)
    else:
        raise InvalidReference(f"{shown!r} does not name a HuggingFace repository.")
    revision = filename = None
    if rest:
        action = rest[0]
        if action not in ("resolve", "blob", "tree") or len(rest) < 2:
            raise InvalidReference(
                f"{shown!r} is not a repository, file or revision URL.",
                hint="Use a .../resolve/<rev>/<file> or .../blob/<rev>/<file> link.",
            )
        revision, file_parts = rest[1], rest[2:]
        if revision == "refs" and file_parts[:1] == ["pr"] and len(file_parts) >= 2:
            revision, file_parts = f"refs/pr/{file_parts[1]}", file_parts[2:]
        if action == "tree" and file_parts:
            raise InvalidReference(f"{shown!r} points at a folder.", hint="Name a file in it, or the repository.")
        if action != "tree":
            if not file_parts:
                raise InvalidReference(f"{shown!r} names no file after the revision.")
            filename = _check_repo_path("/".join(file_parts), shown)
    return ModelRef(HUGGINGFACE, text=shown, repo_id=repo_id, repo_type=repo_type, revision=revision, filename=filename)


def hf_resolve_url(ref: ModelRef, endpoint: str | None = None) -> str:
    """The download URL of a HuggingFace file reference (a blob link read back as its resolve link)."""
    if ref.kind != HUGGINGFACE or not ref.filename:
        raise InvalidReference(f"{ref.text or ref!s} does not name a file in a HuggingFace repository.")
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[ref.repo_type]
    base = (endpoint or hf_endpoint()).rstrip("/")
    revision = quote(ref.revision or "main", safe="")
    return f"{base}/{prefix}{ref.repo_id}/resolve/{revision}/{quote(ref.filename)}"


def civitai_download_url(version_id: int | str, file_id: int | None = None, endpoint: str | None = None) -> str:
    """CivitAI's download route for a model version (its primary file, or the file ``file_id`` names)."""
    suffix = f"?fileId={file_id}" if file_id else ""
    return f"{(endpoint or civitai_endpoint()).rstrip('/')}/api/download/models/{version_id}{suffix}"


def canonical_url(url: str) -> str:
    """The URL a lockfile keeps: public hosts instead of the configured endpoints, and a HuggingFace file as
    the ``/resolve/`` link the resolver fetches (its ``/blob/`` web page would 404 on another machine)."""
    try:
        parsed = parse_url(url)
    except InvalidReference:
        parsed = None
    if parsed is not None and parsed.kind == HUGGINGFACE and parsed.filename:
        return hf_resolve_url(parsed, DEFAULT_HF_ENDPOINT)
    for endpoint, public in _endpoints():
        if endpoint != public and url.startswith(endpoint + "/"):
            return public + url[len(endpoint) :]
    return url


def endpoint_url(url: str) -> str:
    """The inverse of :func:`canonical_url`: public hosts rewritten to the configured endpoints (mirrors)."""
    for endpoint, public in _endpoints():
        if endpoint != public and url.startswith(public + "/"):
            return endpoint + url[len(public) :]
    return url


def _endpoints() -> tuple[tuple[str, str], ...]:
    """(configured endpoint, public host) of each source, read now: a mirror may be set at any time."""
    return (hf_endpoint(), DEFAULT_HF_ENDPOINT), (civitai_endpoint(), DEFAULT_CIVITAI_ENDPOINT)
