"""`texpress bulk verify`: decode a sample of a compressed store (or all of it) against the originals.

Checks, per sampled input: the original still has the recorded checksum and size, the output has
the recorded size, it decodes with the model to the original's width and height, and its PSNR.
For the whole store: every input recorded as done has its output, and no output lacks a record.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from texpress.bulk import manifest as mf
from texpress.bulk.config import WEBDATASET
from texpress.bulk.store import Store
from texpress.codec.api import Codec
from texpress.data.shards import sample_key
from texpress.data.sources import SourceReader
from texpress.errors import ConfigError, InputError
from texpress.evaluate.metrics import psnr
from texpress.registry.refs import resolve_checkpoint


@dataclass
class VerifyReport:
    dest: str
    recorded: int = 0  # inputs recorded as done
    outputs: int = 0  # outputs found in DEST
    checked: int = 0
    psnr_mean: float = 0.0
    psnr_min: float = 0.0
    bytes_in: int = 0  # of the checked inputs
    bytes_out: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def _outputs(store: Store, settings: dict[str, Any]) -> dict[str, int]:
    """Output key (file, or shard/sample for shards) -> size, as found in the destination."""
    found: dict[str, int] = {}
    for name in store.list():
        if name.split("/", 1)[0] in mf.BOOKKEEPING:
            continue
        if settings["dest_format"] != WEBDATASET:
            found[name] = -1
            continue
        with tarfile.open(fileobj=io.BytesIO(store.get(name))) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".tpx"):
                    found[f"{name}/{member.name[:-4]}"] = member.size
    return found


def _output_key(record: dict[str, Any], settings: dict[str, Any]) -> str:
    if settings["dest_format"] == WEBDATASET:
        return f"{record['output']}/{sample_key(record['key'], record['sha256'])}"
    return record["output"]


def _originals(records: list[dict[str, Any]], reader: SourceReader) -> Iterator[tuple[dict[str, Any], bytes | None]]:
    """(record, original bytes or None) for each record, reading each archive once, streamed."""
    by_outer: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        by_outer[r["source"].split("::", 1)[0]][r["source"]] = r
    for outer, wanted in by_outer.items():
        for item in reader.iter_source(outer):
            if item.source in wanted and item.data is not None:
                yield wanted.pop(item.source), item.data
            if not wanted:
                break
        for r in wanted.values():
            yield r, None


def _tpx(store: Store, record: dict[str, Any], settings: dict[str, Any], shards: dict[str, tarfile.TarFile]) -> bytes:
    if settings["dest_format"] != WEBDATASET:
        return store.get(record["output"])
    if record["output"] not in shards:
        shards[record["output"]] = tarfile.open(fileobj=io.BytesIO(store.get(record["output"])))
    f = shards[record["output"]].extractfile(f"{sample_key(record['key'], record['sha256'])}.tpx")
    return f.read() if f else b""


def verify(dest: str, model: str | Path | None, *, sample: int | None = 16, seed: int = 0,
           endpoint_url: str | None = None) -> VerifyReport:
    """Check DEST (written by `bulk compress`); sample=None checks every input."""
    checkpoint = resolve_checkpoint(model)  # a bad --model is named before DEST is read
    store = Store(dest, endpoint_url)
    try:
        settings = json.loads(store.get(mf.SETTINGS))
    except (OSError, ValueError):
        raise InputError(f"{dest}: not a bulk destination (no readable {mf.SETTINGS})") from None
    if settings.get("mode") != "compress":
        raise ConfigError(f"{dest}: verify checks the output of `bulk compress`, this is {settings.get('mode')!r}")
    report = VerifyReport(dest=dest)
    done = sorted((r for r in mf.load(store).values() if r["status"] == mf.DONE), key=lambda r: r["key"])
    found = _outputs(store, settings)
    expected = {_output_key(r, settings) for r in done}
    report.recorded, report.outputs = len(done), len(found)
    report.problems += [f"{k}: recorded as done, output missing" for k in sorted(expected - set(found))][:50]
    report.problems += [f"{k}: output without a manifest record" for k in sorted(set(found) - expected)][:50]
    chosen = done if sample is None or sample >= len(done) else random.Random(seed).sample(done, sample)
    codec = Codec.from_checkpoint(checkpoint)
    reader = SourceReader(max(1, max((r["size_in"] for r in chosen), default=1)), endpoint_url)
    shards: dict[str, tarfile.TarFile] = {}
    scores = []
    for record, original in _originals(chosen, reader):
        problem, score = _check(record, original, store, settings, shards, codec, psnr)
        report.checked += 1
        if problem:
            report.problems.append(f"{record['key']}: {problem}")
        else:
            scores.append(score)
            report.bytes_in += record["size_in"]
            report.bytes_out += record["size_out"]
    if scores:
        report.psnr_mean, report.psnr_min = round(float(np.mean(scores)), 3), round(float(min(scores)), 3)
    return report


def _check(record, original, store, settings, shards, codec, psnr) -> tuple[str | None, float]:
    if original is None:
        return "original not found at its source", 0.0
    if len(original) != record["size_in"] or hashlib.sha256(original).hexdigest() != record["sha256"]:
        return "original changed since it was compressed (size or checksum)", 0.0
    try:
        data = _tpx(store, record, settings, shards)
    except (OSError, KeyError) as exc:
        return f"output unreadable ({exc})", 0.0
    if len(data) != record["size_out"]:
        return f"output is {len(data)} bytes, the manifest says {record['size_out']}", 0.0
    try:
        restored = np.asarray(codec.decompress(data).convert("RGB"))
    except Exception as exc:
        return f"output does not decode ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", 0.0
    reference = codec.load(original).rgb
    if restored.shape != reference.shape:
        return f"decoded size {restored.shape[1]}x{restored.shape[0]} differs from the original's", 0.0
    return None, psnr(reference, restored)
