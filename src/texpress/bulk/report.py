"""The report of a bulk run: counts, bytes in and out, mean bpp, errors, wall time; and its table."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

from texpress.bulk.manifest import DONE, FAILED


@dataclass
class BulkReport:
    """`inputs`, `done`, `failed`, `bytes_*`, `pixels`, `mean_bpp`: the whole store as the manifest
    now records it. `coded`, `skipped`, `failed_now`, `run_bytes_*`, `wall_s`, `coding_span_s` and
    the rates: this run.
    bpp is the .tpx size over the image pixels (for decompress, the input size)."""

    mode: str
    sources: list[str]
    dest: str
    model: str
    workers: int
    effort: int = 0  # the encode effort of compress (codec.refine)
    inputs: int = 0
    done: int = 0
    failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    mean_bpp: float = 0.0
    coded: int = 0
    skipped: int = 0
    failed_now: int = 0
    run_bytes_in: int = 0
    run_bytes_out: int = 0
    wall_s: float = 0.0
    coding_span_s: float = 0.0  # first to last image coded by the actors (start-up left out)
    images_per_s: float = 0.0
    mb_per_s: float = 0.0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)  # the first 100, in key order

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def totals_from(self, records: dict[str, dict[str, Any]]) -> None:
        done = [r for r in records.values() if r["status"] == DONE]
        failed = sorted((r for r in records.values() if r["status"] == FAILED), key=lambda r: r["key"])
        self.inputs, self.done, self.failed = len(records), len(done), len(failed)
        self.bytes_in = sum(r["size_in"] for r in done)
        self.bytes_out = sum(r["size_out"] for r in done)
        self.pixels = sum(r["pixels"] for r in done)
        coded_bytes = self.bytes_out if self.mode == "compress" else self.bytes_in
        self.mean_bpp = round(8.0 * coded_bytes / self.pixels, 6) if self.pixels else 0.0
        self.errors_by_reason = dict(sorted(Counter(r["reason"] for r in failed).items()))
        self.errors = [{"key": r["key"], "reason": r["reason"], "detail": r["detail"]} for r in failed[:100]]

    def finish(self, wall_s: float) -> None:
        self.wall_s = round(wall_s, 3)
        self.images_per_s = round(self.coded / wall_s, 3) if wall_s > 0 else 0.0
        self.mb_per_s = round(self.run_bytes_in / 1e6 / wall_s, 3) if wall_s > 0 else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def table(self) -> Table:
        t = Table(title=f"bulk {self.mode} -> {self.dest}", show_header=False, title_justify="left")
        rows = [("inputs", f"{self.inputs:,}"), ("done", f"{self.done:,}"), ("failed", f"{self.failed:,}"),
                ("coded this run", f"{self.coded:,}"), ("skipped (already done)", f"{self.skipped:,}"),
                ("bytes in", f"{self.bytes_in:,}"), ("bytes out", f"{self.bytes_out:,}"),
                ("mean bpp", f"{self.mean_bpp:.4f}"), *([("effort", f"{self.effort}")] if self.effort else []),
                ("wall time", f"{self.wall_s:.2f} s"),
                ("throughput", f"{self.images_per_s:.2f} images/s, {self.mb_per_s:.2f} MB/s")]
        for reason, n in self.errors_by_reason.items():
            rows.append((f"errors: {reason}", f"{n:,}"))
        for k, v in rows:
            t.add_row(k, v)
        return t
