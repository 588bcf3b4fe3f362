"""`python -m texpress.data.fetch URL [--endpoint-url URL]`: stream one object to stdout.

The command behind the `pipe:` shard URLs that `loader.list_shards` returns for object stores,
so plain webdataset (and any process, DataLoader workers included) can read s3:// shards with
a configurable endpoint (see storage.py for how the endpoint is chosen).
"""

from __future__ import annotations

import argparse
import os
import sys

from texpress.data import storage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m texpress.data.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--endpoint-url", default=None)
    args = parser.parse_args(argv)

    out = sys.stdout.buffer
    try:
        fs, path = storage.url_to_fs(args.url, args.endpoint_url)
        with fs.open(path, "rb", block_size=1 << 22) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                out.write(block)
        out.flush()
    except BrokenPipeError:  # the reader stopped early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        print(f"error: {args.url}: {lines[0] if lines else type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
