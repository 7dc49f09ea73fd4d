"""Registry speed with 100,000 registered models, and the real saving of the zstd cold-model archive.

    .venv/bin/python -m benchmarks.bench_registry [--models 100000] [--archive-mb 64]

Prints the figures BENCHMARKS.md quotes. The database is built in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

COMMON = (
    "anime style portrait landscape realistic cinematic pixel watercolor lineart manga chibi cyberpunk fantasy "
    "dragon castle forest city night neon retro vintage photo film noir sketch ink oil painting detailed "
    "lighting character concept armor robot mecha cat dog flower ocean mountain sky cloud sunset"
).split()


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    """Real model names are diverse: a few common words, thousands of rare ones (character, artist, series names)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    rare = {"".join(rng.choices(letters, k=rng.randint(4, 10))) for _ in range(size)}
    return COMMON + sorted(rare)


def zipf_words(rng: random.Random, words: list[str], k: int) -> list[str]:
    """``k`` words drawn with Zipf-like frequencies (rank r has weight 1/r)."""
    return rng.choices(words, cum_weights=_cum_weights(len(words)), k=k)


_CUM: dict[int, list[float]] = {}


def _cum_weights(n: int) -> list[float]:
    if n not in _CUM:
        total, cum = 0.0, []
        for rank in range(1, n + 1):
            total += 1 / rank
            cum.append(total)
        _CUM[n] = cum
    return _CUM[n]


def build(path: Path, count: int) -> float:
    from hubloader.core.metadata import BaseModel, ModelMetadata, ModelType, Source
    from hubloader.library import database as db
    from hubloader.registry import registry_key

    rng = random.Random(0)
    words = vocabulary(rng)
    types, bases, sources = list(ModelType), list(BaseModel), [Source.CIVITAI, Source.HUGGINGFACE, Source.LOCAL]
    database = db.ModelDatabase(path)
    start = time.perf_counter()
    batch = 5000
    for first in range(0, count, batch):
        with database.write() as conn:
            for i in range(first, min(count, first + batch)):
                name = " ".join(zipf_words(rng, words, 3)) + f" v{i}"
                source = rng.choice(sources)
                meta = ModelMetadata(
                    model_id=f"civitai:{i}@{i}" if source is Source.CIVITAI else f"owner{i % 977}/model-{i}",
                    name=name,
                    source=source,
                    type=rng.choice(types),
                    base_model=rng.choice(bases),
                    sha256=f"{rng.getrandbits(256):064x}",
                    trigger_words=zipf_words(rng, words, 2),
                    tags=zipf_words(rng, words, 4),
                    description=" ".join(zipf_words(rng, words, 30)),
                    download_count=rng.randint(0, 100000),
                    local_path=Path(f"/models/{i}.safetensors") if source is Source.LOCAL else None,
                )
                database.upsert(conn, registry_key(meta), meta, managed=False, status="ok")
    database.close()
    return time.perf_counter() - start


def timed(fn, repeat: int) -> list[float]:
    """Wall-clock milliseconds of each call; the process's CPU milliseconds go to CPU_MS (load-independent)."""
    times = []
    CPU_MS.clear()
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start) * 1000)
        CPU_MS.append((time.process_time() - cpu) * 1000)
    return times


CPU_MS: list[float] = []


def stats(times: list[float]) -> str:
    cpu = sorted(CPU_MS)
    return (
        f"median {statistics.median(times):.2f} ms, p95 {p95(times):.2f} ms "
        f"(CPU median {statistics.median(cpu):.2f} ms, p95 {p95(cpu) if len(cpu) > 1 else cpu[0]:.2f} ms)"
    )


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


#: A search as plain SQLite answers it at the least: the first 20 FTS5 matches (unranked), their whole rows.
BARE_SEARCH = "SELECT * FROM models WHERE pk IN (SELECT rowid FROM models_fts WHERE models_fts MATCH ? LIMIT 20)"
#: The same with FTS5's own relevance order (bm25): what a bare search that ranks its results costs.
BARE_RANKED_SEARCH = (
    "SELECT * FROM models WHERE pk IN (SELECT rowid FROM models_fts WHERE models_fts MATCH ? ORDER BY rank LIMIT 20)"
)


def _fts_words(query: str) -> str:
    return " ".join(f'"{word}"' for word in query.split())


def bare_list(
    source: object = None, model_type: object = None, base_model: object = None, limit: int | None = None
) -> tuple[str, list[str]]:
    """The anchor of a ``list_models`` call: the same filter and order as one plain query of whole rows."""
    from hubloader.core.metadata import ModelType

    where, params = [], []
    if source is not None:
        where.append("source = ?")
        params.append(str(source))
    if model_type is not None:
        types = [str(model_type)] + ([str(ModelType.LYCORIS)] if model_type is ModelType.LORA else [])
        where.append(f"type IN ({', '.join('?' * len(types))})")
        params += types
    if base_model is not None:
        where.append("base_model = ?")
        params.append(str(base_model))
    sql = (
        "SELECT * FROM models"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY updated_at DESC, pk DESC"
    )
    return sql + (f" LIMIT {int(limit)}" if limit is not None else ""), params


def bench_registry(count: int, keep: str | None = None) -> None:
    from hubloader.core.metadata import BaseModel, ModelType, Source
    from hubloader.registry import ModelRegistry

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.db"
        if keep:
            path = Path(keep)
        if not path.exists():
            print(f"build {count} models: {build(path, count):.1f} s, {path.stat().st_size / 1e6:.0f} MB")
        first = timed(lambda: ModelRegistry(path).close(), 1)[0]
        print(f"first open (applies any pending migration): {first:.1f} ms")
        opens = timed(lambda: ModelRegistry(path).close(), 30)
        print(f"open (with migrations check): {stats(opens)}")
        registry = ModelRegistry(path)
        rng = random.Random(1)
        words = vocabulary(random.Random(0))
        # Queries drawn like the corpus: common words are asked for most.
        queries = [" ".join(zipf_words(rng, words, rng.choice((1, 2)))) for _ in range(200)]
        it = iter(queries * 2)
        searches = timed(lambda: registry.search(next(it), local_only=True), len(queries))
        print(f"search(query, local_only) limit 20: {stats(searches)}")
        search_cpu = list(CPU_MS)
        bare = sqlite3.connect(str(path))  # the anchors: plain SQLite on the same file, no registry code
        it = iter(queries * 2)
        anchor = timed(lambda: bare.execute(BARE_SEARCH, (_fts_words(next(it)),)).fetchall(), len(queries))
        print(
            f"  anchor, bare FTS5 query (first 20 matches, rows): {stats(anchor)}; search p95 / bare p95 = "
            f"{p95(searches) / p95(anchor):.2f} wall, {p95(search_cpu) / p95(CPU_MS):.2f} CPU"
        )
        it = iter(queries * 2)
        anchor = timed(lambda: bare.execute(BARE_RANKED_SEARCH, (_fts_words(next(it)),)).fetchall(), len(queries))
        print(
            f"  anchor, bare ranked FTS5 query (bm25 top 20, rows): {stats(anchor)}; search p95 / bare p95 = "
            f"{p95(searches) / p95(anchor):.2f} wall, {p95(search_cpu) / p95(CPU_MS):.2f} CPU (target <= 1)"
        )
        it = iter(queries * 2)
        filtered = timed(
            lambda: registry.search(next(it), local_only=True, model_type=ModelType.LORA, base_model=BaseModel.SDXL),
            len(queries),
        )
        print(f"search(query, type+base filter): {stats(filtered)}")
        worst = timed(lambda: registry.search(COMMON[0], local_only=True), 20)
        hits = registry.db.query_one("SELECT count(*) FROM models_fts WHERE models_fts MATCH ?", (COMMON[0],))[0]
        print(f"search of the most common word ({hits} rows match): {stats(worst)}")
        for label, kwargs in (
            (
                "list_models(source, type, base)",
                {"source": Source.CIVITAI, "model_type": ModelType.LORA, "base_model": BaseModel.SDXL},
            ),
            ("list_models(source, type)", {"source": Source.CIVITAI, "model_type": ModelType.VAE}),
            ("list_models(source=LOCAL, type=VAE)", {"source": Source.LOCAL, "model_type": ModelType.VAE}),
            ("list_models(type=LORA, limit=100)", {"model_type": ModelType.LORA, "limit": 100}),
        ):
            rows = len(registry.list_models(**kwargs))
            times = timed(lambda kw=kwargs: registry.list_models(**kw), 20)
            print(f"{label}: {rows} rows, {stats(times)}")
            list_cpu = list(CPU_MS)
            sql, params = bare_list(**kwargs)
            assert len(bare.execute(sql, params).fetchall()) >= rows
            anchor = timed(lambda q=sql, a=params: bare.execute(q, a).fetchall(), 20)
            print(
                f"  anchor, bare SQLite query: {stats(anchor)}; list_models / bare (medians) = "
                f"{statistics.median(times) / statistics.median(anchor):.2f} wall, "
                f"{statistics.median(list_cpu) / statistics.median(CPU_MS):.2f} CPU (target <= 2)"
            )
        rows = len(registry.list_models(model_type=ModelType.LORA))
        times = timed(lambda: registry.list_models(model_type=ModelType.LORA), 5)
        print(f"list_models(type=LORA) unbounded: {rows} rows, {stats(times)}")
        ids = [key for (key,) in registry.db.query("SELECT model_id FROM models WHERE source = 'civitai' LIMIT 5000")]
        gets = timed(lambda: registry.get_model(rng.choice(ids)), 200)
        print(f"get_model(id): {stats(gets)}")
        registry.close()
        bare.close()


def weights(dtype: str, n: int, rng) -> bytes:
    """Gaussian weights like a trained layer's (std 0.02), in ``dtype`` — the statistics that decide compressibility."""
    import numpy as np

    values = rng.standard_normal(n).astype(np.float32) * 0.02
    if dtype == "bf16":
        return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return values.astype(np.float16 if dtype == "fp16" else np.float32).tobytes()


def bench_archive(megabytes: int) -> None:
    import numpy as np

    from hubloader.library.archive import archive_file, restore_file

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("fp16", "bf16", "fp32"):
            path = Path(tmp) / f"{dtype}.safetensors"
            itemsize = 4 if dtype == "fp32" else 2
            path.write_bytes(weights(dtype, megabytes * 1024 * 1024 // itemsize, rng))
            size = path.stat().st_size
            start = time.perf_counter()
            archived = archive_file(path)
            packed = time.perf_counter() - start
            saved = 1 - archived.stat().st_size / size
            start = time.perf_counter()
            restore_file(archived, path)
            unpacked = time.perf_counter() - start
            print(
                f"archive {dtype} {size / 2**20:.0f} MiB: saves {saved * 100:.1f}% "
                f"(compress {size / 2**20 / packed:.0f} MiB/s, restore {size / 2**20 / unpacked:.0f} MiB/s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--archive-mb", type=int, default=64)
    parser.add_argument("--keep", help="build the database at this path once and reuse it on later runs")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    import sqlite3

    print(f"SQLite {sqlite3.sqlite_version}")
    bench_registry(args.models, args.keep)
    if args.archive_mb > 0:
        bench_archive(args.archive_mb)


if __name__ == "__main__":
    main()
