"""Settings: endpoints, tokens and folders. Environment variables first, then the settings file.

Read at call time, never cached at import, so a user (or a test) can change ``HF_ENDPOINT`` or a
token in a running process. Tokens travel as :class:`Secret`, whose ``repr``/``str`` never show
the value.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_CIVITAI_ENDPOINT = "https://civitai.com"
log = logging.getLogger(__name__)
SETTINGS_FILE = "settings.json"

#: Settings a user may store in the file, with their defaults.
DEFAULTS: dict[str, Any] = {
    "hf_token": None,
    "civitai_token": None,
    "hf_endpoint": None,
    "civitai_endpoint": None,
    "models_dir": None,
    "cache_limit_gb": None,
    "allow_pickle": False,
    "max_connections": 32,  # an upper bound: the engine adds connections only while they add throughput
    "max_connections_per_host": {"civitai": 4},
    "nsfw": False,
    "min_speed_bytes_s": 1024,  # a connection slower than this over min_speed_window_s is dropped and retried
    "min_speed_window_s": 30,
    "shared_cache": None,  # a folder or s3://bucket/prefix shared by a fleet (HUBLOADER_SHARED_CACHE wins)
    "verify_before_prompt": False,  # ComfyUI: check a workflow's pinned hashes before its prompt runs
}
SECRET_KEYS = frozenset({"hf_token", "civitai_token"})
#: Settings that change where bytes come from or go, which bytes are trusted, or which a cleanup deletes (the cache
#: limit): only a local face that allows writes changes them (SECURITY.md).
LOCAL_ONLY_KEYS = frozenset(
    {"hf_endpoint", "civitai_endpoint", "shared_cache", "allow_pickle", "allowed_hosts", "cache_limit_gb", "models_dir"}
)


class Secret:
    """A token. Its value is reachable only through :meth:`reveal`, so it cannot leak by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def hubloader_home() -> Path:
    """Where the registry, settings and logs live (``HUBLOADER_HOME``, default ``~/.hubloader``)."""
    return Path(os.environ.get("HUBLOADER_HOME") or Path.home() / ".hubloader").expanduser()


def settings_path() -> Path:
    return hubloader_home() / SETTINGS_FILE


#: The JSON type a stored setting must have when it is not null; the others are strings.
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "allow_pickle": (bool,),
    "nsfw": (bool,),
    "verify_before_prompt": (bool,),
    "max_connections": (int,),
    "cache_limit_gb": (int, float),
    "max_connections_per_host": (dict,),
    "min_speed_bytes_s": (int, float),
    "min_speed_window_s": (int, float),
}
_TYPE_NAMES = {bool: "true or false", int: "a number", dict: "a JSON object", str: "a string"}
_warned: set[str] = set()


def load_settings() -> dict[str, Any]:
    """The settings file merged over the defaults; a missing or broken file means defaults. A value of the
    wrong type (``"max_connections": "eight"``) is not used: its default is, with one warning naming it
    (an error here would also stop reading the tokens the error message is redacted with)."""
    settings = dict(DEFAULTS)
    try:
        stored = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return settings
    if isinstance(stored, dict):
        settings.update({k: v for k, v in stored.items() if k in DEFAULTS and _right_type(k, v)})
    return settings


def _right_type(key: str, value: Any) -> bool:
    """Whether ``value`` may be stored for ``key`` (:data:`SETTING_TYPES`); warns once when not."""
    allowed = SETTING_TYPES.get(key, (str,))
    wrong_bool = isinstance(value, bool) and bool not in allowed  # JSON true is not a number
    if value is None or (isinstance(value, allowed) and not wrong_bool):
        return True
    shown = "a hidden value" if key in SECRET_KEYS else json.dumps(value)[:40]
    warning = f"The settings file {settings_path()} sets {key} to {shown}; it must be {_TYPE_NAMES[allowed[0]]}, so the default is used."
    if warning not in _warned:
        _warned.add(warning)
        log.warning("hubloader: %s", warning)
    return False


def save_settings(changes: dict[str, Any]) -> Path:
    """Merge ``changes`` into the settings file, written atomically with 0600 permissions."""
    unknown = set(changes) - set(DEFAULTS)
    if unknown:
        from hubloader.core.errors import ConfigError

        raise ConfigError(f"Unknown setting(s): {', '.join(sorted(unknown))}.", hint=f"Known: {', '.join(DEFAULTS)}.")
    path = settings_path()
    current = _stored_settings(path)
    for key, value in changes.items():
        value = value.reveal() if isinstance(value, Secret) else value
        if value is None or value == "":
            current.pop(key, None)
        else:
            current[key] = value
    try:
        _write_settings(path, current)
    except OSError as exc:  # a read-only HUBLOADER_HOME, a full disk: the old file is untouched (atomic write)
        from hubloader.core.errors import ConfigError

        raise ConfigError(
            f"The settings file {path} cannot be written ({exc.strerror or exc}); nothing was saved, it is unchanged.",
            hint="Make its folder writable (or set HUBLOADER_HOME to one that is), then save again.",
        ) from None
    return path


def _write_settings(path: Path, settings: dict[str, Any]) -> None:
    """``settings`` as the whole file, atomically (a temporary file renamed over it), 0600 where POSIX."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows Pythons before 3.13 lack it (and have no such mode bits)
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(settings, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stored_settings(path: Path) -> dict[str, Any]:
    """What the settings file holds now. A file that cannot be read as settings stops the save: overwriting it
    would silently drop the tokens in it (a truncated write, a hand edit gone wrong)."""
    from hubloader.core.errors import ConfigError

    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"The settings file {path} cannot be read ({exc}); nothing was saved, so what it holds is kept.",
            hint="Fix the file (it is JSON) or move it away, then save again.",
        ) from None
    if not isinstance(stored, dict):
        raise ConfigError(
            f"The settings file {path} holds a JSON {type(stored).__name__}, not an object; nothing was saved.",
            hint="Fix the file (a JSON object of settings) or move it away, then save again.",
        )
    return stored


def public_settings() -> dict[str, Any]:
    """Settings safe to show a page: tokens become ``"set"``/``"not set"``."""
    shown = load_settings()
    shown["hf_token"] = "set" if hf_token() else "not set"
    shown["civitai_token"] = "set" if civitai_token() else "not set"
    return shown


def _secret(value: str | None) -> Secret | None:
    value = (value or "").strip()
    return Secret(value) if value else None


def hf_token() -> Secret | None:
    """``HF_TOKEN``, then our settings file, then huggingface_hub's stored login (read without importing it)."""
    return (
        _secret(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
        or _secret(load_settings().get("hf_token"))
        or _secret(_read_text(_hf_token_path()))
    )


def _hf_token_path() -> Path:
    if os.environ.get("HF_TOKEN_PATH"):
        return Path(os.environ["HF_TOKEN_PATH"]).expanduser()
    hf_home = (
        os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    return Path(hf_home).expanduser() / "token"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def civitai_token() -> Secret | None:
    return _secret(os.environ.get("CIVITAI_API_TOKEN") or os.environ.get("CIVITAI_API_KEY")) or _secret(
        load_settings().get("civitai_token")
    )


def hf_endpoint() -> str:
    """``HF_ENDPOINT`` (a mirror, or the loopback fake in tests), else the setting, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or load_settings().get("hf_endpoint") or DEFAULT_HF_ENDPOINT).rstrip("/")


def civitai_endpoint() -> str:
    """The CivitAI site root (not ``/api/v1``): ``CIVITAI_ENDPOINT``, the setting, or civitai.com."""
    return (
        os.environ.get("CIVITAI_ENDPOINT") or load_settings().get("civitai_endpoint") or DEFAULT_CIVITAI_ENDPOINT
    ).rstrip("/")


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


_SECRET_QUERY = re.compile(r"token|key|signature|sig|credential|auth|session|password|secret", re.IGNORECASE)


def redact_url(url: str) -> str:
    """A URL safe to print: user info and token-like or signature query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unprintable URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [(k, "***" if _SECRET_QUERY.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*/:",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str, *secrets: Secret | str | None) -> str:
    """``text`` with every given secret value (and anything that looks like an HF token) masked."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = text.replace(value, "***")
    return re.sub(r"hf_[A-Za-z0-9]{20,}", "hf_***", text)
