"""DVC stage `shard`: validate, deduplicate, split and shard data/raw into data/shards (params: shard)."""

from __future__ import annotations

import sys

from texpress.console import EXIT_FAILED_ITEMS, err_console, fail, out_console
from texpress.data.config import ShardConfig
from texpress.params import load_params
from texpress.data.report import run_ingest
from texpress.errors import TexpressError

PARAMS = "params.yaml"
RAW = "data/raw"
OUT = "data/shards"


def main() -> int:
    try:
        config = ShardConfig.from_dict(load_params(PARAMS, "shard"))
        result = run_ingest([RAW], OUT, config, console=err_console, summary_console=out_console,
                            progress=err_console.is_terminal)
    except TexpressError as exc:
        return fail(str(exc)).exit_code
    if result.manifest["accepted"] == 0:
        return fail("no image was accepted; see data/shards/rejected.jsonl", EXIT_FAILED_ITEMS).exit_code
    if result.source_errors:
        return fail(f"{len(result.source_errors)} source(s) could not be read; see data/shards/rejected.jsonl",
                    EXIT_FAILED_ITEMS).exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
