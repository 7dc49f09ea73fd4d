"""Background downloads a page started: a small queue any host can show (ComfyUI sidebar, Gradio tab).

A job wraps one callable that does the real work (resolve, download, verify, place) and reports
progress through a callback; the queue only runs it on a worker thread, keeps its state and tells
listeners. Cancelling sets the job's event: the download engine stops and keeps the ``.part``, so
starting the same download again resumes it.

Host-agnostic on purpose: no aiohttp, no gradio, no host module here.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hubloader.core.errors import Cancelled, HubloaderError
from hubloader.core.settings import redact_text, redact_url
from hubloader.faces.advice import Face, explain

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = frozenset({DONE, FAILED, CANCELLED})

#: Progress callback given to a job's work: ``(done_bytes, total_bytes)``.
ProgressFn = Callable[[int, int], None]
#: The work itself: gets the progress callback and the cancel event, returns the placed file (a path, or an
#: object with ``path`` and ``size_bytes``).
Work = Callable[[ProgressFn, threading.Event], object]
#: Listener: ``(event_name, job_dict)`` with event_name "progress" or "state".
Listener = Callable[[str, dict[str, object]], None]

#: Progress events are coalesced to at most one per job per this many seconds (state changes always go out).
PROGRESS_INTERVAL_S = 0.25


def shown(text: str) -> str:
    """``text`` safe for a page, an event or a log: the query tokens of any URL in it (a pasted CivitAI URL
    may carry ``?token=``) and HF tokens masked."""
    return redact_text(" ".join(redact_url(word) if "?" in word or "@" in word else word for word in text.split(" ")))


@dataclass
class Job:
    """One download the user asked for. ``to_dict`` is what a page sees."""

    id: str
    label: str
    kind: str = ""
    ref: str = ""
    state: str = QUEUED
    done_bytes: int = 0
    total_bytes: int = 0
    speed_bps: float = 0.0
    error: str = ""
    path: str = ""
    filename: str = ""
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: object = field(default=None, repr=False)
    work: Work | None = field(default=None, repr=False)  # kept so a failed or cancelled job can run again
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _started: float = field(default=0.0, repr=False)
    _last_emit: float = field(default=0.0, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "label": self.label,
            "kind": self.kind,
            "ref": self.ref,
            "state": self.state,
            "done_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "speed_bps": round(self.speed_bps, 1),
            "error": self.error,
            "path": self.path,
            "filename": self.filename,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class JobManager:
    """A bounded pool of download workers with observable, cancellable jobs."""

    def __init__(self, max_workers: int = 2, *, keep_finished: int = 50, face: Face | None = None) -> None:
        """``face`` phrases a failed job's error with that face's advice (:mod:`hubloader.faces.advice`)."""
        self.max_workers = max_workers
        self.face = face
        self.keep_finished = keep_finished
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._ids = itertools.count(1)
        self._pool: ThreadPoolExecutor | None = None

    # -- listeners -------------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: str, job: Job) -> None:
        data = job.to_dict()
        for listener in list(self._listeners):
            try:
                listener(event, data)
            except Exception:  # a broken page connection must not kill a download
                log.exception("hubloader: job listener failed")

    # -- queue -----------------------------------------------------------------------------------------
    def submit(self, label: str, work: Work, *, kind: str = "", ref: str = "", dedupe: bool = True) -> Job:
        """Queue ``work``. With ``dedupe``, an unfinished job for the same ``(kind, ref)`` is returned instead."""
        label, ref = shown(label), shown(ref)
        with self._lock:
            if dedupe and ref:
                for job in self._jobs.values():
                    if job.ref == ref and job.kind == kind and job.state not in FINISHED:
                        return job
            job = Job(
                id=f"job-{next(self._ids)}-{int(time.time() * 1000) % 100000}",
                label=label,
                kind=kind,
                ref=ref,
                work=work,
            )
            self._jobs[job.id] = job
            self._trim()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="hubloader-download")
            pool = self._pool
        self._emit("state", job)
        pool.submit(self._run, job, work)
        return job

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in FINISHED]
        for job in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job.id]

    def _run(self, job: Job, work: Work) -> None:
        with self._lock:
            if job.state in FINISHED:  # cancelled while queued
                return
            job.state, job._started = RUNNING, time.monotonic()
        self._emit("state", job)
        try:
            result = work(lambda done, total: self._progress(job, done, total), job.cancel_event)
        except Cancelled as exc:
            self._finish(job, CANCELLED, error=str(exc))
        except HubloaderError as exc:
            self._finish(job, FAILED, error=explain(exc, self.face) if self.face else str(exc))
        except Exception as exc:  # report, never crash the worker; the message is ours or the OS's, no token
            log.exception("hubloader: download %s failed", job.label)
            self._finish(job, FAILED, error=f"{type(exc).__name__}: {exc}")
        else:
            job.result = result
            path = getattr(result, "path", result)
            if isinstance(path, (str, Path)):
                job.path, job.filename = str(path), _shown_name(result, Path(path))
            if job.total_bytes == 0:
                job.total_bytes = job.done_bytes = int(getattr(result, "size_bytes", 0) or 0)
            self._finish(job, DONE)

    def _progress(self, job: Job, done: int, total: int) -> None:
        job.done_bytes, job.total_bytes = int(done), int(total or 0)
        now = time.monotonic()
        elapsed = now - job._started
        if elapsed > 0:
            job.speed_bps = job.done_bytes / elapsed
        if now - job._last_emit >= PROGRESS_INTERVAL_S:
            job._last_emit = now
            self._emit("progress", job)

    def _finish(self, job: Job, state: str, *, error: str = "") -> None:
        job.state, job.error, job.finished_at = state, shown(error), time.time()
        if state == DONE and job.total_bytes:
            job.done_bytes = job.total_bytes
        self._emit("state", job)

    # -- queries and control ---------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_at)

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop; False when there is no such unfinished job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED:
                return False
            job.cancel_event.set()
            was_queued = job.state == QUEUED
            if was_queued:
                job.state = CANCELLED
        if was_queued:
            self._finish(job, CANCELLED, error="Cancelled before it started.")
        return True

    def retry(self, job_id: str) -> Job | None:
        """Run a failed or cancelled job's work again as a new job (the download engine resumes from the
        ``.part`` file it kept); None when there is no such finished-unsuccessfully job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state not in (FAILED, CANCELLED) or job.work is None:
                return None
        return self.submit(job.label, job.work, kind=job.kind, ref=job.ref)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job finishes (for tests and command lines)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self._jobs[job_id]
        while job.state not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Download {job.label} still {job.state} after {timeout} s.")
            time.sleep(0.02)
        return job

    def shutdown(self) -> None:
        for job in self._jobs.values():
            job.cancel_event.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
            self._pool = None


def _shown_name(result: object, path: Path) -> str:
    """The file's name as its host lists it: the result's own ``name`` when it gives one (a ComfyUI loader's
    combo name, ``owner__repo/model.safetensors`` for a file placed apart), else the file name."""
    name = None if isinstance(result, (str, Path)) else getattr(result, "name", None)
    return name if isinstance(name, str) and name else path.name
