"""huggingface_hub as we meet it: what differs between its versions, and its exceptions turned into ours.

huggingface_hub is imported only inside these functions (a host's start-up never pays for it).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict
from urllib.parse import urlsplit

from hubloader.core import settings as config
from hubloader.core.errors import (
    AuthRequired,
    FileNotFoundOnHub,
    GatedModel,
    HubloaderError,
    InvalidReference,
    NetworkError,
    NotFound,
    OfflineError,
    RateLimited,
    RevisionNotFound,
    network_reason,
)
from hubloader.sources.references import HUGGINGFACE

UNREACHABLE_HINT = "Check the connection (and HF_ENDPOINT, if set) and try again; downloads resume."

# --- version compatibility ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HubCompat:
    """What differs between the huggingface_hub versions we support (0.26.x … 2.x)."""

    metadata_takes_endpoint: bool  # get_hf_file_metadata(endpoint=) appeared with the httpx client
    transport_errors: tuple[type[BaseException], ...]  # connection/timeout errors of its HTTP stack


class EndpointOption(TypedDict, total=False):
    """``get_hf_file_metadata``'s ``endpoint`` keyword, given only to the versions that take it."""

    endpoint: str


@functools.lru_cache(maxsize=1)
def hub_compat() -> HubCompat:
    """The one place that looks at the installed huggingface_hub. (``list_models(filter=)`` works in all.)"""
    from huggingface_hub import get_hf_file_metadata

    errors: list[type[BaseException]] = []
    for module, name in (("requests", "RequestException"), ("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return HubCompat(
        metadata_takes_endpoint="endpoint" in inspect.signature(get_hf_file_metadata).parameters,
        transport_errors=tuple(errors),
    )


# --- errors ---------------------------------------------------------------------------------------


class RepoNotFoundOrPrivate(NotFound, AuthRequired):
    """The Hub hides private repos from anonymous callers: missing and private look the same."""


def http_error(exc: Any, what: str, endpoint: str, *, has_token: bool) -> HubloaderError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        if has_token:
            return AuthRequired(
                f"{endpoint} refused the HuggingFace token for {what} (HTTP {status}).",
                service=HUGGINGFACE,
                hint="The token is invalid, expired or lacks read access; a new token with read access is needed.",
            )
        return AuthRequired(f"{endpoint} requires a token for {what} (HTTP {status}).", service=HUGGINGFACE)
    if status == 429:
        retry_after = getattr(exc.response, "headers", {}).get("Retry-After")
        return RateLimited(
            f"{endpoint} is rate limiting requests for {what}.",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    return NetworkError(f"{endpoint} answered HTTP {status} for {what}.")


@contextmanager
def hub_errors(
    repo_id: str, *, path: str | None = None, revision: str | None = None, has_token: bool = False
) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into ours: distinct, actionable, without the token."""
    from huggingface_hub import errors as hf

    endpoint = config.redact_url(config.hf_endpoint())
    what = f"{repo_id}/{path}" if path else repo_id
    try:
        yield
    except HubloaderError:
        raise
    except hf.GatedRepoError as exc:
        raise GatedModel(repo_id, endpoint=endpoint) from exc
    except hf.RepositoryNotFoundError as exc:
        if has_token:
            raise NotFound(f"{repo_id} was not found on {endpoint}, or your token cannot see it.") from exc
        raise RepoNotFoundOrPrivate(
            f"{repo_id} was not found on {endpoint}.",
            service=HUGGINGFACE,
            hint="Check the name; a private repository needs a HuggingFace token with access to it.",
        ) from exc
    except hf.RevisionNotFoundError as exc:
        raise RevisionNotFound(f"Revision {revision!r} does not exist in {repo_id}.") from exc
    except hf.LocalEntryNotFoundError as exc:
        if config.hf_offline() or isinstance(exc.__cause__, hf.OfflineModeIsEnabled):
            raise OfflineError(f"{what} is not in the local cache and HF_HUB_OFFLINE is set.") from exc
        raise NetworkError(
            f"Could not reach {endpoint} for {what} ({network_reason(exc)}), and it is not in the local cache.",
            hint=UNREACHABLE_HINT,
        ) from exc
    except hf.EntryNotFoundError as exc:
        raise FileNotFoundOnHub(f"{path or 'The file'} does not exist in {repo_id} at {revision or 'main'}.") from exc
    except hf.OfflineModeIsEnabled as exc:
        raise OfflineError(f"{what}: huggingface_hub is in offline mode.") from exc
    except hf.HfHubHTTPError as exc:
        raise http_error(exc, what, endpoint, has_token=has_token) from exc
    except hub_compat().transport_errors as exc:
        raise NetworkError(
            f"Could not reach {endpoint} for {what} ({network_reason(exc)}).", hint=UNREACHABLE_HINT
        ) from exc
    except hf.HFValidationError as exc:
        raise InvalidReference(f"{what!r} is not a valid HuggingFace repository or file name.") from exc


def check_reachable(endpoint: str, what: str) -> None:
    """One TCP connect to ``endpoint``, NetworkError at once when it is refused or the host unknown.

    huggingface_hub >= 1.0 retries such a connection five times with backoff (23 s) before a search fails;
    a connect first makes a dead endpoint one immediate error. Skipped when a proxy carries the requests
    (the endpoint itself may be unreachable directly, yet fine through the proxy)."""
    import socket
    import urllib.request

    parts = urlsplit(endpoint)
    if not parts.hostname:
        return
    proxies = urllib.request.getproxies()
    if (proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(parts.hostname):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=10).close()
    except OSError as exc:
        raise NetworkError(
            f"Could not reach {config.redact_url(endpoint)} for {what} ({network_reason(exc)}).", hint=UNREACHABLE_HINT
        ) from exc
