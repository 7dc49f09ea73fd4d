"""The two places a site keeps its shared, content-addressed model cache: a directory and an S3 bucket.

Both offer the same few primitives to :mod:`hubloader.sharedcache.cache`, which builds pulling, election and
publishing on top of them, so a mounted NFS/SMB volume and MinIO/R2/AWS take one code path.

Layout (both stores)::

    <root>/sha256/ab/cdef…           the object: the file's bytes, named by their SHA256 ("ab" + "cdef…")
    <root>/sha256/ab/cdef….json      its record: size, file name, source, URL/AIR, first fetched
    <root>/sha256/ab/cdef….lease     present while one worker fetches it from the origin
    <root>/staging/…                 transfers in progress (never read as objects): on a directory the
                                     fetcher's ``.part``; on S3 the chunks of its ``.part`` written so far
    <root>/quarantine/…              objects whose bytes did not match their name (directory store)

A lease is a small JSON body plus a *token* that changes on every write (directory: a nonce in the
body; S3: the ETag). ``lease_replace`` is a compare-and-swap on that token, which is what makes taking
over an expired lease safe when several workers notice the expiry at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from hubloader.core.errors import ConfigError, NetworkError

MiB = 1024 * 1024
#: Part size for multipart uploads and for ranged reads of large objects.
PART_SIZE = 64 * MiB
#: Staged chunks are the parts of the final multipart upload: at least this big (S3's minimum part is
#: 5 MiB), and no more than S3's 10,000 parts per object.
STAGE_CHUNK = 8 * MiB
MAX_PARTS = 10_000


class SharedCacheUnavailable(NetworkError):
    """The shared cache cannot be used right now (unreachable, not mounted, no credentials, no bucket)."""

    hint = (
        "Check HUBLOADER_SHARED_CACHE (or --shared-cache); set HUBLOADER_SHARED_CACHE_FALLBACK=origin "
        "to download from the origin meanwhile."
    )


def object_key(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256[2:]}"


class Store(Protocol):
    """What :class:`hubloader.sharedcache.cache.SharedCache` needs from a backend."""

    url: str
    read_part: int  # bytes per ranged read when copying an object out

    def check(self) -> None: ...
    def object_size(self, sha256: str) -> int | None: ...
    def read_range(self, sha256: str, start: int, end: int) -> bytes: ...
    def read_record(self, sha256: str) -> dict[str, Any] | None: ...
    def staging_path(self, sha256: str) -> Path | None:
        """Where the fetcher downloads so that a worker taking over resumes its ``.part`` — or None: the
        fetcher downloads locally and stages chunks through :class:`ChunkStaging` instead."""
        ...

    def publish(self, sha256: str, local: Path, record: dict[str, Any]) -> None: ...
    def quarantine(self, sha256: str, reason: str) -> str: ...
    def lease_create(self, sha256: str, body: dict[str, Any]) -> str | None: ...
    def lease_read(self, sha256: str) -> tuple[dict[str, Any], str] | None: ...
    def lease_replace(self, sha256: str, body: dict[str, Any], token: str) -> str | None: ...
    def lease_delete(self, sha256: str, token: str) -> None: ...


@dataclass(frozen=True)
class StagedChunk:
    """One chunk of an unfinished origin download, kept in the store for whoever takes the fetch over."""

    key: str
    file_size: int
    start: int
    end: int
    sha256: str

    def is_part(self, step: int) -> bool:
        """Whether it is a whole part of the final object (parts are ``step`` long, the last one shorter)."""
        return self.start % step == 0 and self.end == min(self.start + step, self.file_size)


class ChunkStaging(Protocol):
    """A store that cannot hold a ``.part`` (S3) keeps pieces of the fetcher's ``.part`` instead: whole
    parts of the final object (``chunk_size`` long, aligned) and, while a part is still incomplete,
    fragments of it, so that a crash loses little even with many connections each mid-part."""

    def chunk_size(self, size: int) -> int: ...
    def staged_chunks(self, sha256: str) -> list[StagedChunk]: ...
    def stage_chunk(self, sha256: str, size: int, start: int, data: bytes) -> None: ...
    def read_chunk(self, chunk: StagedChunk) -> bytes | None:
        """The piece's bytes; None when it is gone (a publisher cleared the staging area) or when its bytes
        do not match the hash in its name (then it is deleted)."""

    def clear_staged(self, sha256: str) -> None: ...


def open_store(url: str) -> Store:
    """``s3://bucket/prefix`` → :class:`S3Store`; a path or ``file://`` URL → :class:`DirectoryStore`."""
    url = url.strip()
    if url.startswith("s3://"):
        return S3Store(url)
    if "://" in url and not url.startswith("file://"):
        raise ConfigError(
            f"Unsupported shared cache {url!r}.",
            hint="Use s3://bucket/prefix (AWS S3, MinIO, R2 … with AWS_ENDPOINT_URL) or a directory path.",
        )
    return DirectoryStore(Path(url[len("file://") :] if url.startswith("file://") else url).expanduser())


# --- a directory (NFS, SMB, a mounted volume) -----------------------------------------------------


class DirectoryStore:
    """A shared folder. Renames within it are atomic; a short ``filelock`` guards each lease update."""

    read_part = 8 * MiB

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def check(self) -> None:
        if not self.root.is_dir():
            raise SharedCacheUnavailable(f"The shared cache folder {self.root} does not exist or is not mounted.")
        if not os.access(self.root, os.W_OK):
            raise SharedCacheUnavailable(f"The shared cache folder {self.root} is not writable by this user.")

    def _path(self, sha256: str, suffix: str = "") -> Path:
        return self.root / (object_key(sha256) + suffix)

    def object_size(self, sha256: str) -> int | None:
        with _os_errors(self):
            try:
                return self._path(sha256).stat().st_size
            except FileNotFoundError:
                return None

    def read_range(self, sha256: str, start: int, end: int) -> bytes:
        with _os_errors(self), open(self._path(sha256), "rb") as fh:
            return os.pread(fh.fileno(), end - start, start)

    def read_record(self, sha256: str) -> dict[str, Any] | None:
        return _read_json(self._path(sha256, ".json"))

    def staging_path(self, sha256: str) -> Path:
        """The origin download goes straight into the share, so a worker taking over a dead fetcher's
        lease resumes its ``.part`` (the download engine's resume) instead of starting again."""
        staging = self.root / "staging"
        with _os_errors(self):
            staging.mkdir(exist_ok=True)
        return staging / sha256

    def publish(self, sha256: str, local: Path, record: dict[str, Any]) -> None:
        target = self._path(sha256)
        with _os_errors(self):
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_json(self._path(sha256, ".json"), record, keep_existing=True)
            if local.parent == self.root / "staging":
                from hubloader.engine.download import lock_path

                os.replace(local, target)  # already verified, on the same filesystem
                lock_path(local).unlink(missing_ok=True)  # the staging name is never downloaded again
                return
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out, open(local, "rb") as src:
                    while chunk := src.read(8 * MiB):
                        out.write(chunk)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def quarantine(self, sha256: str, reason: str) -> str:
        place = self.root / "quarantine" / f"{sha256}.{uuid.uuid4().hex[:8]}"
        with _os_errors(self):
            place.parent.mkdir(exist_ok=True)
            try:
                os.replace(self._path(sha256), place)
            except FileNotFoundError:
                return ""  # another worker moved it first
            _write_json(place.with_name(place.name + ".json"), {"sha256": sha256, "reason": reason})
        return str(place)

    @contextlib.contextmanager
    def _lease_mutex(self, sha256: str) -> Iterator[None]:
        from filelock import FileLock

        lock_path = self._path(sha256, ".lease.lock")
        with _os_errors(self):
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(lock_path), timeout=30):
                yield

    def lease_create(self, sha256: str, body: dict[str, Any]) -> str | None:
        with self._lease_mutex(sha256):
            if self._path(sha256, ".lease").exists():
                return None
            return self._write_lease(sha256, body)

    def lease_read(self, sha256: str) -> tuple[dict[str, Any], str] | None:
        body = _read_json(self._path(sha256, ".lease"))
        return (body, str(body.get("nonce"))) if body else None

    def lease_replace(self, sha256: str, body: dict[str, Any], token: str) -> str | None:
        with self._lease_mutex(sha256):
            current = self.lease_read(sha256)
            if current is None or current[1] != token:
                return None
            return self._write_lease(sha256, body)

    def lease_delete(self, sha256: str, token: str) -> None:
        with self._lease_mutex(sha256):
            current = self.lease_read(sha256)
            if current is not None and current[1] == token:
                self._path(sha256, ".lease").unlink(missing_ok=True)

    def _write_lease(self, sha256: str, body: dict[str, Any]) -> str:
        nonce = uuid.uuid4().hex
        _write_json(self._path(sha256, ".lease"), {**body, "nonce": nonce})
        return nonce


@contextlib.contextmanager
def _os_errors(store: DirectoryStore) -> Iterator[None]:
    """A share that went away (unmounted, stale NFS handle, server down) is 'unavailable', not a crash."""
    try:
        yield
    except FileNotFoundError:
        if not store.root.is_dir():
            raise SharedCacheUnavailable(f"The shared cache folder {store.root} is gone (unmounted?).") from None
        raise
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.ETIMEDOUT, errno.EACCES, errno.EROFS):
            raise SharedCacheUnavailable(
                f"The shared cache folder {store.root} cannot be used ({exc.strerror or exc})."
            ) from None
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any], *, keep_existing: bool = False) -> None:
    """Temp name then rename: a reader sees the old file or the new one, never half of one."""
    if keep_existing and path.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Backblaze B2 …) -----------------------


class S3Store:
    """``s3://bucket/prefix`` through boto3: the standard AWS credential chain (env, profile, role) and
    ``AWS_ENDPOINT_URL`` for non-AWS stores. Leases use conditional writes (``If-None-Match: *`` to
    create, ``If-Match: <etag>`` to renew or take over), which AWS S3, MinIO and R2 support."""

    #: Ranged GETs of this size: AWS's advice for parallel reads (8–16 MB), fewer requests per object.
    read_part = 16 * MiB

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError(f"{url!r} names no bucket.", hint="Use s3://bucket or s3://bucket/prefix.")
        self.url = url.rstrip("/")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise SharedCacheUnavailable(
                    "An s3:// shared cache needs boto3, which is not installed.",
                    hint="Install it: pip install 'hubloader[fleet]' (or pip install boto3).",
                ) from None
            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
            )
            with self._errors():
                self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def _key(self, sha256: str, suffix: str = "") -> str:
        return self.prefix + object_key(sha256) + suffix

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """botocore's many exceptions, reduced to 'unavailable' (with one clear line) or passed on."""
        from botocore import exceptions as bx

        try:
            yield
        except (bx.NoCredentialsError, bx.PartialCredentialsError):
            raise SharedCacheUnavailable(
                f"No credentials for {self.url}.",
                hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or an instance role).",
            ) from None
        except (
            bx.EndpointConnectionError,
            bx.ConnectTimeoutError,
            bx.ReadTimeoutError,
            bx.ConnectionClosedError,
        ) as exc:
            raise SharedCacheUnavailable(f"{self.url} is unreachable ({type(exc).__name__}).") from None
        except bx.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                raise SharedCacheUnavailable(
                    f"The bucket {self.bucket!r} does not exist at this endpoint.",
                    hint="Create it, or check AWS_ENDPOINT_URL and the bucket name.",
                ) from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken") or status == 403:
                raise SharedCacheUnavailable(
                    f"{self.url} refused these credentials ({code or status}).",
                    hint="Check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket policy.",
                ) from None
            if status >= 500:
                raise SharedCacheUnavailable(f"{self.url} answered {status} {code}.") from None
            raise
        except bx.BotoCoreError as exc:
            raise SharedCacheUnavailable(f"{self.url} cannot be used ({type(exc).__name__}).") from None

    def check(self) -> None:
        with self._errors():
            self.client.head_bucket(Bucket=self.bucket)

    def object_size(self, sha256: str) -> int | None:
        return self._size(self._key(sha256))

    def _size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors():
                return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise

    def read_range(self, sha256: str, start: int, end: int) -> bytes:
        with self._errors():
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(sha256), Range=f"bytes={start}-{end - 1}")
            data: bytes = answer["Body"].read()
            return data

    def read_record(self, sha256: str) -> dict[str, Any] | None:
        found = self._get_json(self._key(sha256, ".json"))
        return found[0] if found else None

    def staging_path(self, sha256: str) -> None:
        return None  # the fetcher downloads into its own models folder and stages chunks (below)

    def publish(self, sha256: str, local: Path, record: dict[str, Any]) -> None:
        """Multipart upload straight to the hash key: S3 shows an object only once its upload completes,
        so the parts in flight are the 'temporary key' and no reader ever sees half an object. The file
        was verified before this is called. Chunks already staged during the download become parts by a
        server-side copy when they hold the same bytes as the verified file, so only the rest is sent."""
        from boto3.s3.transfer import TransferConfig

        key = self._key(sha256)
        if self._size(key) is not None:
            return
        self._put_if_absent(self._key(sha256, ".json"), json.dumps(record, indent=1).encode())
        size = local.stat().st_size
        step = self.chunk_size(size)
        staged = {c.start: c for c in self.staged_chunks(sha256) if c.file_size == size and c.is_part(step)}
        if staged:
            self._assemble(key, local, size, step, staged)
            self.clear_staged(sha256)
            return
        config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4)
        with self._errors():
            self.client.upload_file(str(local), self.bucket, key, Config=config)

    def _assemble(self, key: str, local: Path, size: int, step: int, staged: dict[int, StagedChunk]) -> None:
        with self._errors():
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        target = {"Bucket": self.bucket, "Key": key, "UploadId": upload}

        def send(number: int) -> dict[str, Any]:
            start = (number - 1) * step
            with open(local, "rb") as fh:
                data = os.pread(fh.fileno(), min(step, size - start), start)
            chunk = staged.get(start)
            with self._errors():
                if chunk is not None and _sha256(data) == chunk.sha256:
                    answer = self.client.upload_part_copy(
                        **target, PartNumber=number, CopySource={"Bucket": self.bucket, "Key": chunk.key}
                    )
                    return {"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]}
                answer = self.client.upload_part(**target, PartNumber=number, Body=data)
                return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            with ThreadPoolExecutor(4, thread_name_prefix="hubloader-publish") as pool:
                parts = list(pool.map(send, range(1, -(-size // step) + 1)))
            with self._errors():
                self.client.complete_multipart_upload(**target, MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(**target)
            raise

    # -- staged chunks: what a fetcher has downloaded so far, for a worker that takes over ----------

    def chunk_size(self, size: int) -> int:
        return max(STAGE_CHUNK, -(-size // (MAX_PARTS * MiB)) * MiB)

    def _staging_prefix(self, sha256: str) -> str:
        return f"{self.prefix}staging/{sha256}/"

    def staged_chunks(self, sha256: str) -> list[StagedChunk]:
        """Listed, not read: ``staging/<sha256>/<file size>/<start>-<end>-<sha256 of the piece>``."""
        chunks = []
        with self._errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._staging_prefix(sha256)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    chunk = _parse_chunk_key(item["Key"], int(item["Size"]))
                    if chunk is not None:
                        chunks.append(chunk)
        return chunks

    def stage_chunk(self, sha256: str, size: int, start: int, data: bytes) -> None:
        key = f"{self._staging_prefix(sha256)}{size}/{start:012d}-{start + len(data):012d}-{_sha256(data)}"
        with self._errors():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def read_chunk(self, chunk: StagedChunk) -> bytes | None:
        """The chunk's bytes; None when it is gone (a publisher cleared the staging area) or when they do not
        match the hash in its name (then it is deleted)."""
        from botocore.exceptions import ClientError

        try:
            with self._errors():
                data: bytes = self.client.get_object(Bucket=self.bucket, Key=chunk.key)["Body"].read()
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        if _sha256(data) == chunk.sha256 and len(data) == chunk.end - chunk.start:
            return data
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=chunk.key)
        return None

    def clear_staged(self, sha256: str) -> None:
        keys = [c.key for c in self.staged_chunks(sha256)]
        with self._errors():
            for batch in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
                objects = [{"Key": k} for k in keys[batch : batch + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    def quarantine(self, sha256: str, reason: str) -> str:
        """Copy aside under ``quarantine/`` (server side) and delete: the next fetch starts clean."""
        key = self._key(sha256)
        place = f"{self.prefix}quarantine/{sha256}.{uuid.uuid4().hex[:8]}"
        from botocore.exceptions import ClientError

        try:
            with self._errors():
                self.client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, place)
                self.client.put_object(
                    Bucket=self.bucket, Key=place + ".json", Body=json.dumps({"sha256": sha256, "reason": reason})
                )
        except ClientError:
            place = ""  # already gone, or copying is not allowed: deleting is what matters
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=key)
        return f"s3://{self.bucket}/{place}" if place else ""

    def lease_create(self, sha256: str, body: dict[str, Any]) -> str | None:
        return self._put_if_absent(self._key(sha256, ".lease"), json.dumps(body).encode())

    def lease_read(self, sha256: str) -> tuple[dict[str, Any], str] | None:
        return self._get_json(self._key(sha256, ".lease"))

    def lease_replace(self, sha256: str, body: dict[str, Any], token: str) -> str | None:
        from botocore.exceptions import ClientError

        body = {**body, "nonce": uuid.uuid4().hex}  # identical bodies would share an ETag
        try:
            with self._errors():
                answer = self.client.put_object(
                    Bucket=self.bucket, Key=self._key(sha256, ".lease"), Body=json.dumps(body).encode(), IfMatch=token
                )
        except ClientError as exc:
            if _status(exc) in (404, 409, 412):
                return None
            raise
        return str(answer["ETag"])

    def lease_delete(self, sha256: str, token: str) -> None:
        from botocore.exceptions import ClientError

        key = self._key(sha256, ".lease")
        try:
            with self._errors():
                self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=token)
        except ClientError as exc:
            if _status(exc) in (404, 409, 412):
                return  # not ours any more: someone took it over
            with self._errors():  # a store without conditional deletes
                self.client.delete_object(Bucket=self.bucket, Key=key)

    def _put_if_absent(self, key: str, body: bytes) -> str | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors():
                answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
        except ClientError as exc:
            if _status(exc) in (409, 412):  # 409: a concurrent conditional write is in progress
                return None
            raise
        return str(answer["ETag"])

    def _get_json(self, key: str) -> tuple[dict[str, Any], str] | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors():
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
                data = json.loads(answer["Body"].read())
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        except ValueError:
            return None
        return (data, str(answer["ETag"])) if isinstance(data, dict) else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse_chunk_key(key: str, length: int) -> StagedChunk | None:
    """A staged piece from its key (see :meth:`S3Store.staged_chunks`); None for anything else."""
    try:
        file_size, name = key.rsplit("/", 2)[-2:]
        start, end, sha256 = name.split("-")
        chunk = StagedChunk(key, int(file_size), int(start), int(end), sha256)
    except ValueError:
        return None
    if len(sha256) != 64 or chunk.end - chunk.start != length or length <= 0 or chunk.end > chunk.file_size:
        return None
    return chunk


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
