"""Loopback HuggingFace / CivitAI / CDN servers for tests and benchmarks. See ``server.FakeHub``."""

from .faults import Faults
from .server import FakeHub, SeenRequest

__all__ = ["FakeHub", "Faults", "SeenRequest"]
