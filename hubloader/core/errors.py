"""One exception tree. Every message states facts: what happened and what is needed.

What the user should do about it (a command to run, a settings panel to open) depends on where they are:
the faces phrase that advice (:mod:`hubloader.faces.advice`), so these messages never name a command or
a settings screen. Errors carry the facts a face needs as attributes (``AuthRequired.service``).

No message ever contains a token: build them from names, ids and redacted URLs only
(see ``hubloader.core.settings.redact_url``).
"""

from __future__ import annotations

from pathlib import Path


class HubloaderError(Exception):
    """Base of every error Hubloader raises on purpose."""

    #: Short advice appended to the message; subclasses override.
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message


class ConfigError(HubloaderError):
    hint = "Check the setting named above (environment variable or settings file)."


#: The services a token can be for (:attr:`AuthRequired.service`).
HUGGINGFACE = "huggingface"
CIVITAI = "civitai"


class AuthRequired(HubloaderError):
    """The source needs a token we do not have, or the token was refused.

    ``service`` is whose token is needed (:data:`HUGGINGFACE` or :data:`CIVITAI`), "" when the answer
    does not tell (a plain URL on another host).
    """

    hint = "A token with access to it is needed."
    service: str = ""

    def __init__(self, message: str, *, service: str | None = None, hint: str | None = None) -> None:
        if service is not None:
            self.service = service
        super().__init__(message, hint=hint)


class GatedModel(AuthRequired):
    """A HuggingFace repo whose terms must be accepted on its page first."""

    service = HUGGINGFACE

    def __init__(self, repo_id: str, *, endpoint: str = "https://huggingface.co") -> None:
        self.repo_id = repo_id
        super().__init__(
            f"{repo_id} is a gated repository.",
            hint=(
                f"Its terms must be accepted with a HuggingFace account at {endpoint.rstrip('/')}/{repo_id}, "
                "and the download needs that account's token."
            ),
        )


class EarlyAccess(AuthRequired):
    service = CIVITAI
    hint = "This version is in early access on CivitAI: buy access on its page or wait until it is public."


class DownloadsDisabled(HubloaderError):
    hint = "The creator turned downloads off for this model; nothing can fetch it."


class NotFound(HubloaderError):
    hint = "Check the name, id or URL; the model may have been renamed, made private or deleted."


class RevisionNotFound(NotFound):
    hint = "Check the branch, tag or commit name (e.g. 'main')."


class FileNotFoundOnHub(NotFound):
    hint = "List the repository's files to find the right path."


class RateLimited(HubloaderError):
    hint = "The service is throttling requests; wait a little and try again."

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, hint=hint)


class NetworkError(HubloaderError):
    hint = "Check the connection and the endpoint setting (HF_ENDPOINT / CIVITAI_ENDPOINT); rerun to resume."


class OfflineError(NetworkError):
    hint = "HF_HUB_OFFLINE is set and the file is not in the local cache; unset it to download."


class IntegrityError(HubloaderError):
    """The bytes received are not the bytes the source published."""

    hint = "The partial file was deleted; try again, and report the model if it keeps happening."

    def __init__(self, message: str, *, expected: str = "", actual: str = "", hint: str | None = None) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message, hint=hint)


class NotAModelFile(IntegrityError):
    """The server sent HTML/JSON (a login page, an error) where a model file was expected."""

    hint = "Nothing was saved."


class UnsafeFile(HubloaderError):
    """A file that could run code or exhaust memory if loaded: hostile header, dangerous pickle."""

    hint = "Do not load this file. Prefer a .safetensors version of the model."


class InvalidFile(HubloaderError):
    """A file that is not what its name says (truncated, corrupt, wrong format)."""

    hint = "Delete it and download it again."


class PickleNotAllowed(UnsafeFile):
    hint = "Pickle formats (.ckpt/.pt/.bin) can run code when loaded; they are refused unless allowed explicitly."


class DiskFull(HubloaderError):
    """The disk holding ``where`` has too little space: ``needed`` more bytes, ``free`` free (None: unknown)."""

    hint = "The download needs more free space there, or another folder."

    def __init__(
        self,
        message: str,
        *,
        where: Path | None = None,
        needed: int | None = None,
        free: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.where = where
        self.needed = needed
        self.free = free
        super().__init__(message, hint=hint)


class IndexUnavailable(HubloaderError):
    """The model index (the SQLite file ``path``) cannot be read or written: corrupt, locked or read-only.
    Nothing was changed in it, and no model file was touched."""

    hint = "The model files are untouched."

    def __init__(self, message: str, *, path: Path | None = None, hint: str | None = None) -> None:
        self.path = path
        super().__init__(message, hint=hint)


class Cancelled(HubloaderError):
    hint = "The partial file was kept; start the download again to resume."


class InvalidReference(HubloaderError):
    hint = (
        "Use owner/repo[/file] for HuggingFace, civitai:MODEL[@VERSION], a huggingface.co or civitai.com URL, "
        "an AIR (urn:air:…) or a SHA256/AutoV2 hash."
    )


def network_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("connection refused", "timed out"), for a one-line message.

    HTTP clients wrap the cause several layers deep (requests → urllib3 → socket; httpx → httpcore → socket)
    and their text repeats the whole URL; the caller chains ``exc`` (``raise … from exc``) for ``--verbose``.
    """
    import socket
    import ssl

    chain = _exception_chain(exc)
    for kinds, words in (
        (socket.gaierror, "host name not found"),
        (ConnectionRefusedError, "connection refused"),
        (ssl.SSLError, "TLS handshake failed"),
        ((ConnectionResetError, ConnectionAbortedError, BrokenPipeError), "connection reset"),
        (TimeoutError, "timed out"),
    ):
        if any(isinstance(e, kinds) for e in chain):
            return words
    names = " ".join(type(e).__name__ for e in chain)
    for marker, words in (("Timeout", "timed out"), ("SSL", "TLS handshake failed"), ("Proxy", "proxy error")):
        if marker in names:
            return words
    return "connection failed"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps: causes, contexts, urllib3's ``reason`` and exception arguments."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or any(current is e for e in found):
            continue
        found.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return found
