"""What the :class:`~hubloader.workflows.resolver.Resolver` needs of the services it asks: our registry,
CivitAI and HuggingFace. The real classes fit; a face or a test may pass anything else that does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from hubloader.core.metadata import ModelMetadata, ModelType


class ModelLookup(Protocol):
    """Our registry: a model by id, name, AIR or any hash (:class:`~hubloader.registry.ModelRegistry`)."""

    def find_model(self, ref: str) -> ModelMetadata | None:
        """The model ``ref`` names, or None when the registry knows none."""
        ...


class CivitAISource(Protocol):
    """CivitAI's API (:class:`~hubloader.sources.civitai.CivitAIService`)."""

    def get_model_details(self, model_id: int | str) -> ModelMetadata:
        """A model's newest version."""
        ...

    def get_model_version(self, version_id: int | str) -> ModelMetadata:
        """One model version."""
        ...

    def find_by_hashes(self, hashes: Iterable[str]) -> dict[str, ModelMetadata]:
        """The versions whose files have these hashes, by lower-case hash; unknown ones left out."""
        ...

    def search_models(
        self, query: str | None = None, *, type: ModelType | str | None = None, limit: int = 20
    ) -> list[ModelMetadata]:
        """Models whose name matches ``query``, of ``type`` when given."""
        ...


class HuggingFaceSource(Protocol):
    """The HuggingFace Hub (:class:`~hubloader.sources.huggingface.HuggingFaceHubService`)."""

    def search_models(self, query: str | None = None, *, limit: int = 20) -> list[ModelMetadata]:
        """Repositories whose name matches ``query``."""
        ...

    def repo_files(self, repo_id: str, revision: str = "main") -> list[str]:
        """The path of every file in a repository."""
        ...

    def file_size_and_sha256(
        self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model"
    ) -> tuple[int, str]:
        """(size, SHA256 or "") of one file of a repository."""
        ...
