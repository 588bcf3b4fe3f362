"""Ingest: sources -> validated, deduplicated, split, sharded dataset directory.

One pass over the sources in their fixed order: each item is decoded and validated (optionally
in worker processes; the output does not depend on how many), checked against the hashes seen
so far, assigned a split by its content hash and appended to that split's shards. Everything
is written into a temporary sibling folder that replaces DIR only when complete.

Layout of DIR:
    manifest.json, rejected.jsonl, duplicates.jsonl   (see manifest.py)
    {train,val,test}/manifest.json
    {train,val,test}/shard-000000.tar ...             each sample: KEY.EXT (the original encoded
                                                      bytes, EXT from the decoded format: jpg,
                                                      png, ...) and KEY.json with source, sha256,
                                                      width, height, split, mode, ext, exif_transpose
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from texpress.data import manifest as mf
from texpress.data import storage
from texpress.data.config import ShardConfig
from texpress.data.dedupe import Deduper
from texpress.data.shards import SplitWriter, sample_key
from texpress.data.sources import Item, iter_items
from texpress.data.split import SPLITS, assign_split
from texpress.data.validate import Accepted, Rejected, validate
from texpress.errors import InputError


@dataclass(frozen=True)
class Outcome:
    """What happened to one item (passed to the progress callback)."""

    source: str
    status: str  # "accepted", "rejected" or "duplicate"
    split: str | None = None
    reason: str | None = None
    detail: str = ""


@dataclass
class IngestResult:
    out_dir: Path
    manifest: dict[str, Any]
    source_errors: list[tuple[str, str]] = field(default_factory=list)  # (source, why it could not be read)
    written: bool = True  # False: nothing was accepted and the earlier dataset in out_dir was kept


def _validate_chunk(datas: list[bytes], min_side: int, max_pixels: int) -> list[Accepted | Rejected]:
    return [validate(d, min_side, max_pixels) for d in datas]


def _chunks(items: Iterable[Item], max_items: int = 32, max_bytes: int = 16 << 20) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    size = 0
    for item in items:
        chunk.append(item)
        size += len(item.data or b"")
        if len(chunk) >= max_items or size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _validated(items: Iterable[Item], config: ShardConfig) -> Iterator[tuple[Item, Accepted | Rejected | None]]:
    """(item, result) in input order; result is None for items refused before decoding."""
    if config.workers <= 1:
        for item in items:
            yield item, (None if item.data is None else validate(item.data, config.min_side, config.max_pixels))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no fork of threads (s3fs, progress bars)
    with ProcessPoolExecutor(max_workers=config.workers, mp_context=ctx) as pool:
        pending: deque = deque()

        def resolve(chunk: list[Item], future) -> Iterator[tuple[Item, Accepted | Rejected | None]]:
            results = iter(future.result())
            for item in chunk:
                yield item, (None if item.data is None else next(results))

        for chunk in _chunks(items):  # chunks amortise the inter-process overhead
            datas = [i.data for i in chunk if i.data is not None]
            pending.append((chunk, pool.submit(_validate_chunk, datas, config.min_side, config.max_pixels)))
            while len(pending) > 2 * config.workers:
                yield from resolve(*pending.popleft())
        while pending:
            yield from resolve(*pending.popleft())


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace anything but an earlier dataset (or an empty folder)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a directory")
    if any(out_dir.iterdir()) and not (out_dir / mf.MANIFEST).is_file():
        raise InputError(f"{out_dir}: exists, is not empty and holds no texpress dataset; refusing to replace it")


def ingest(
    sources: Sequence[str],
    out_dir: str | Path,
    config: ShardConfig = ShardConfig(),
    *,
    endpoint_url: str | None = None,
    on_item: Callable[[Outcome], None] | None = None,
) -> IngestResult:
    """Build the dataset directory `out_dir` from `sources`; returns the manifest written.

    A run that accepts no image leaves an earlier dataset in `out_dir` as it was (result.written
    is False): a mistyped source must not wipe a good dataset."""
    if not sources:
        raise InputError("no sources given")
    if storage.is_url(out_dir) and not str(out_dir).startswith("file://"):
        raise InputError(f"{out_dir}: the output must be a local folder (upload it afterwards, e.g. with dvc push)")
    out_dir = Path(storage.local_path(out_dir))
    _check_replaceable(out_dir)
    tmp = storage.new_partial_dir(out_dir)
    try:
        result = _build(list(sources), tmp, config, endpoint_url, on_item)
        if result.manifest["accepted"] == 0 and (out_dir / mf.MANIFEST).is_file():
            shutil.rmtree(tmp)
            result.written = False
        else:
            storage.replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.out_dir = out_dir
    return result


def _build(sources: list[str], tmp: Path, config: ShardConfig, endpoint_url: str | None,
           on_item: Callable[[Outcome], None] | None) -> IngestResult:
    writers = {s: SplitWriter(tmp / s, config.max_samples, config.max_bytes) for s in SPLITS}
    dedupe = Deduper()
    seen = accepted = rejected = duplicates = 0
    reasons: Counter[str] = Counter()
    source_errors: list[str] = []
    items = iter_items(sources, config.max_file_bytes, endpoint_url)
    with open(tmp / mf.REJECTED, "w", encoding="utf-8") as rej, open(tmp / mf.DUPLICATES, "w", encoding="utf-8") as dup:
        try:
            for item, result in _validated(items, config):
                seen += 1
                if result is None or isinstance(result, Rejected):
                    reason = item.reason if result is None else result.reason
                    detail = item.detail if result is None else result.detail
                    rejected += 1
                    reasons[reason] += 1
                    if item.fatal:
                        source_errors.append((item.source, detail))
                    rej.write(json.dumps({"source": item.source, "reason": reason, "detail": detail}, sort_keys=True) + "\n")
                    outcome = Outcome(item.source, "rejected", reason=reason, detail=detail)
                else:
                    kept = dedupe.check(result.sha256, item.source)
                    if kept is not None:
                        duplicates += 1
                        dup.write(json.dumps({"source": item.source, "duplicate_of": kept, "sha256": result.sha256}, sort_keys=True) + "\n")
                        outcome = Outcome(item.source, "duplicate", detail=f"same pixels as {kept}")
                    else:
                        split = assign_split(result.sha256, config.val_frac, config.test_frac)
                        record = {
                            "source": item.source, "sha256": result.sha256, "width": result.width,
                            "height": result.height, "split": split, "mode": result.mode,
                            "ext": result.ext, "exif_transpose": result.exif_transpose,
                        }
                        files = {result.ext: item.data, "json": json.dumps(record, sort_keys=True).encode()}
                        writers[split].write(sample_key(item.name, result.sha256), files)  # type: ignore[arg-type]
                        accepted += 1
                        outcome = Outcome(item.source, "accepted", split=split)
                if on_item is not None:
                    on_item(outcome)
        finally:
            for w in writers.values():
                w.close()
    assert accepted + rejected + duplicates == seen
    split_manifests = {}
    for split, w in writers.items():
        (tmp / split).mkdir(exist_ok=True)
        split_manifests[split] = {"split": split, "count": w.count, "bytes": w.bytes, "shards": w.shards}
        mf.write_json(tmp / split / mf.MANIFEST, split_manifests[split])
    manifest = {
        "format": mf.FORMAT,
        "dataset_version": mf.compute_version(split_manifests),
        "seen": seen,
        "accepted": accepted,
        "rejected": rejected,
        "duplicates": duplicates,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "source_errors": len(source_errors),
        "splits": {s: split_manifests[s]["count"] for s in SPLITS},
        "shards": {s: len(split_manifests[s]["shards"]) for s in SPLITS},
        "bytes": {s: split_manifests[s]["bytes"] for s in SPLITS},
        "sources": [str(s) for s in sources],
        "config": config.output_dict(),
    }
    mf.write_json(tmp / mf.MANIFEST, manifest)
    return IngestResult(out_dir=tmp, manifest=manifest, source_errors=source_errors)
