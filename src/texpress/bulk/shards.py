"""WebDataset shards of .tpx records as a destination, byte-identical on every run.

Shard names follow the read units: `shard-UUUUUU-PPPP.tar` holds part PPPP (shard_size inputs) of
unit UUUUUU, so a re-run rebuilds exactly the shards a killed run did not finish. A record is
KEY.tpx plus KEY.json ({"key": original path, "sha256": of the input}); KEY is data.shards'
sample_key (no dots, unique by hash). Tar headers are fixed (mtime 0, mode 0444, no owner names)
and records are in input order; the shard is built in memory and stored whole.
"""

from __future__ import annotations

import io
import json
from typing import Any

from texpress.bulk.store import Store
from texpress.data.shards import sample_key


def shard_name(unit: int, index: int, shard_size: int) -> str:
    return f"shard-{unit:06d}-{index // shard_size:04d}.tar"


def expected_counts(total: int, shard_size: int) -> list[int]:
    """Inputs per part of a unit with `total` inputs."""
    return [min(shard_size, total - start) for start in range(0, total, shard_size)]


def build_shard(records: list[dict[str, Any]]) -> bytes:
    """A tar of the coded records (dicts with index, key, sha256, data), in input order."""
    import webdataset as wds

    buf = io.BytesIO()
    with wds.TarWriter(buf, encoder=False, user="", group="", mode=0o444, mtime=0) as writer:
        for r in sorted(records, key=lambda r: r["index"]):
            meta = json.dumps({"key": r["key"], "sha256": r["sha256"]}, sort_keys=True).encode()
            writer.write({"__key__": sample_key(r["key"], r["sha256"]), "json": meta, "tpx": r["data"]})
    return buf.getvalue()


class ShardAssembler:
    """Collects coded rows per shard in the driver; a shard is stored when all its inputs arrived."""

    def __init__(self, store: Store, shard_size: int) -> None:
        self.store, self.shard_size = store, shard_size
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.expected: dict[str, int] = {}

    def add(self, row: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
        """Add an input row (any status) or a unit's END row; returns the shards completed by it."""
        if row["status"] == "end":
            for part, n in enumerate(expected_counts(row["count"], self.shard_size)):
                self.expected[shard_name(row["unit"], part * self.shard_size, self.shard_size)] = n
            names = [n for n in self.expected if len(self.rows.get(n, ())) == self.expected[n]]
        else:
            name = shard_name(row["unit"], row["index"], self.shard_size)
            self.rows.setdefault(name, []).append(row)
            names = [name] if len(self.rows[name]) == self.expected.get(name, -1) else []
        return [self._finish(n) for n in names]

    def _finish(self, name: str) -> tuple[str, list[dict[str, Any]]]:
        rows = self.rows.pop(name)
        del self.expected[name]
        coded = [r for r in rows if r["status"] == "done"]
        if coded:
            self.store.put(name, build_shard(coded))
        return name, rows
