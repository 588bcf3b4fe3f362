"""The manifest in DEST: one record per input, so a re-run skips what is done.

    DEST/manifest.jsonl          compacted records, sorted by key (written at the end of a run)
    DEST/_manifest/part-*.jsonl  records appended during a run, each part written whole
    DEST/errors.jsonl            the failed inputs with a reason, sorted by key

A record: key (the input's path relative to its SOURCE, archive members under the archive's
name), source (where it was read), sha256 and size_in of the input bytes, output (key of the output
object, or the shard holding it), size_out, pixels, status ("done" or "failed"), reason and detail;
and effort, for inputs compressed at an encode effort above 0.
Parts are written only after the outputs they list are complete; the last record of a key wins.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

from texpress.bulk.store import Store

MANIFEST = "manifest.jsonl"
ERRORS = "errors.jsonl"
REPORT = "report.json"
SETTINGS = "bulk.json"
PARTS = "_manifest"
BOOKKEEPING = (MANIFEST, ERRORS, REPORT, SETTINGS, PARTS)

DONE = "done"
FAILED = "failed"
FIELDS = ("key", "source", "sha256", "size_in", "output", "size_out", "pixels", "status", "reason", "detail")


def _lines(data: bytes) -> Iterable[dict[str, Any]]:
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line can only come from a foreign writer: parts are written whole
        if isinstance(record, dict) and "key" in record:
            yield record


def load(store: Store) -> dict[str, dict[str, Any]]:
    """key -> latest record, from the compacted manifest and then every part in order."""
    records: dict[str, dict[str, Any]] = {}
    names = ([MANIFEST] if store.exists(MANIFEST) else []) + store.list(PARTS)
    for name in names:
        for record in _lines(store.get(name)):
            records[record["key"]] = record
    return records


def dumps(records: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records).encode()


class Recorder:
    """Buffers records and writes them as a new part every `every` records or `seconds` seconds."""

    def __init__(self, store: Store, every: int = 256, seconds: float = 2.0) -> None:
        self.store = store
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 10**9:09d}"
        self.every, self.seconds = every, seconds
        self.buffer: list[dict[str, Any]] = []
        self.seq = 0
        self.last = time.monotonic()

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        self.buffer.extend(records)
        if len(self.buffer) >= self.every or time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.store.put(f"{PARTS}/part-{self.run_id}-{self.seq:06d}.jsonl", dumps(self.buffer))
            self.seq += 1
            self.buffer = []
        self.last = time.monotonic()


def compact(store: Store, records: dict[str, dict[str, Any]]) -> None:
    """Write the sorted manifest and errors.jsonl, then drop the parts they now contain (and any
    temporary file a killed writer left: every write of this job is over when this runs)."""
    parts = store.list(PARTS)
    ordered = [records[k] for k in sorted(records)]
    store.put(MANIFEST, dumps(ordered))
    store.put(ERRORS, dumps({"key": r["key"], "source": r["source"], "reason": r["reason"], "detail": r["detail"]}
                            for r in ordered if r["status"] == FAILED))
    for name in parts:
        store.delete(name)
    store.remove_empty_dir(PARTS)
    store.remove_stale_temporaries()
