"""Fuzz the .tpx decoder: mutated files decoded in child processes with a time and a memory limit.

    .venv/bin/python benchmarks/fuzz_tpx.py [--files 10000] [--seed 0] [--batch 250] [--workers 2]

Seeds are small real .tpx files of an untrained lite model (format 4 in one piece and in tiles, with
and without alpha, grey, and format 1). Each mutant is one of: bit flips (checksum kept or forged),
truncation, splices of two files, forged header fields with a valid checksum (sizes up to 2^32-1,
tile sizes and counts, mode, version, flags), resized or replaced segments (y, z, escape lists,
alpha) with the table and checksum fixed, and all-ones strings that drive rANS escape paths.

Children decode a batch each and report every file before and after it, so a crash, a hang (over
--timeout s) or a memory overrun (RSS over --max-rss-mb, polled) is pinned on one file, and a new
child takes the rest of the batch. Outcomes: decoded (garbage pixels are fine), refused with a
TexpressError (one line), unexpected exception, crash, hang, memory overrun. The target is 0 of the
last four. Prints a table and writes benchmarks/results/fuzz_tpx.json (failures saved to --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import psutil

RESULTS = Path(__file__).parent / "results" / "fuzz_tpx.json"
BAD = ("unexpected", "crash", "hang", "memory")

CHILD = r"""
import sys, time, traceback, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
from texpress.codec.api import Codec
from texpress.errors import TexpressError
codec = Codec.from_checkpoint(sys.argv[1])
print("READY", flush=True)
for line in sys.stdin:
    path = line.strip()
    if not path:
        break
    print("START", path, flush=True)
    t = time.perf_counter()
    try:
        codec.decompress(Path(path).read_bytes())
        outcome, detail = "decoded", ""
    except TexpressError as exc:
        outcome, detail = "refused", str(exc).splitlines()[0] if str(exc) else ""
        if "\n" in str(exc):
            outcome = "unexpected"
    except Exception as exc:
        outcome, detail = "unexpected", f"{type(exc).__name__}: {str(exc)[:200]}"
    print("DONE", path, outcome, f"{time.perf_counter() - t:.4f}", detail.replace(chr(10), " "), flush=True)
"""


# ---------------------------------------------------------------- seeds and mutations

def make_seeds(model: Path, out: Path) -> list[bytes]:
    import torch
    from PIL import Image

    from texpress.codec import bitstream
    from texpress.codec.api import Codec, to_tensor
    from texpress.samples import sample_photos

    codec = Codec.from_checkpoint(model)
    photo = Image.open(sample_photos()[0]).convert("RGBA")
    seeds = [
        codec.compress(photo.convert("RGB").crop((0, 0, 64, 64))),
        codec.compress(photo.crop((100, 100, 250, 200))),
        codec.compress(photo.convert("L").crop((0, 0, 130, 90))),
        codec.compress(photo.convert("LA").crop((50, 0, 120, 70))),
        codec.encode(codec.load(photo.convert("RGB").crop((0, 0, 200, 150))), tile=64),  # 4x3 tiles
    ]
    image = codec.load(photo.crop((0, 0, 96, 80)))
    with torch.inference_mode():
        strings = codec.model.compress(to_tensor(image.rgb))["strings"]
    h = bitstream.read_header(codec.compress(photo.crop((0, 0, 96, 80))))
    seeds.append(bitstream.pack_v1(h, strings[0][0], strings[1][0], bitstream.encode_alpha(image.alpha)))
    out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds):
        (out / f"seed-{i}.tpx").write_bytes(s)
    return seeds


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def segments(data: bytes) -> tuple[bytes, list[bytes]] | None:
    """(header, segments) of a well-formed version 2, 3 or 4 file, else None. Version 2's header is 40
    bytes with 3 + 2 x tiles segments; 3 and 4 add quality, passes and effort (44 bytes) and carry
    3 + 2 x tiles x passes segments."""
    if len(data) < 48 or data[4] not in (2, 3, 4):
        return None
    head_size = 40 if data[4] == 2 else 44
    tiles = struct.unpack_from("<I", data, 36)[0]
    n = 3 + 2 * tiles * (1 if data[4] == 2 else data[42])
    if len(data) < head_size + 4 * n:
        return None
    lengths = struct.unpack_from(f"<{n}I", data, head_size)
    off, segs = head_size + 4 * n, []
    for length in lengths:
        segs.append(data[off: off + length])
        off += length
    return data[:head_size], segs


def join(head: bytes, segs: list[bytes]) -> bytes:
    return with_crc(head + struct.pack(f"<{len(segs)}I", *map(len, segs)) + b"".join(segs))


def flip_bits(rng: random.Random, data: bytes, fix_crc: bool) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 8, 32])):
        i = rng.randrange(len(b) - (4 if fix_crc else 0))
        b[i] ^= 1 << rng.randrange(8)
    return with_crc(bytes(b[:-4])) if fix_crc else bytes(b)


def truncate(rng: random.Random, data: bytes) -> bytes:
    cut = rng.randrange(len(data))
    return with_crc(data[: max(0, cut - 4)]) if rng.random() < 0.5 else data[:cut]


def splice(rng: random.Random, a: bytes, b: bytes) -> bytes:
    body = a[: rng.randrange(len(a))] + b[rng.randrange(len(b)):]
    return with_crc(body[:-4]) if rng.random() < 0.7 and len(body) > 4 else body


HUGE = [0, 1, 63, 64, 65, 2047, 2048, 4096, 65535, 65536, 10_000, 100_000, 2**31 - 1, 2**31, 2**32 - 1]


def forge_header(rng: random.Random, data: bytes) -> bytes:
    """Header fields set to odd or huge values, checksum recomputed."""
    body = bytearray(data[:-4])
    if data[4] == 1:
        fields = [(4, 1), (5, 1), (6, 2), (24, 4), (28, 4), (32, 2), (34, 2), (36, 2), (38, 2), (40, 4), (44, 4), (48, 4)]
    elif data[4] == 2:
        fields = [(4, 1), (5, 1), (6, 2), (24, 4), (28, 4), (32, 4), (36, 4)]
    else:  # 3 and 4: quality, passes, effort after the tile count
        fields = [(4, 1), (5, 1), (6, 2), (24, 4), (28, 4), (32, 4), (36, 4), (40, 2), (42, 1), (43, 1)]
    for _ in range(rng.choice([1, 1, 2, 3])):
        off, size = rng.choice(fields)
        value = rng.choice(HUGE + [rng.randrange(1 << (8 * size))]) % (1 << (8 * size))
        body[off: off + size] = value.to_bytes(size, "little")
    return with_crc(bytes(body))


def forge_segment(rng: random.Random, data: bytes) -> bytes:
    """One segment of a version 2-4 file replaced, resized or made all ones; table and checksum fixed."""
    parsed = segments(data)
    if parsed is None:
        return forge_header(rng, data)
    head, segs = parsed
    i = rng.randrange(len(segs))
    kind = rng.choice(["random", "ones", "zeros", "cut", "grow", "varint"])
    n = rng.choice([0, 1, 3, 4, 8, 64, 1000, 50_000])
    if kind == "random":
        segs[i] = rng.randbytes(n)
    elif kind == "ones":
        segs[i] = b"\xff" * n
    elif kind == "zeros":
        segs[i] = bytes(n)
    elif kind == "cut":
        segs[i] = segs[i][: rng.randrange(len(segs[i]) + 1)]
    elif kind == "grow":
        segs[i] = segs[i] + rng.randbytes(n)
    else:  # an escape list of plausible varints, some overlong
        segs[i] = bytes(rng.choice([0x01, 0x7F, 0x80, 0xFF, 0x00]) for _ in range(rng.choice([1, 5, 6, 40])))
    return join(head, segs)


def mutate(rng: random.Random, seeds: list[bytes]) -> tuple[str, bytes]:
    data = rng.choice(seeds)
    kind = rng.choices(["flip", "flip_crc", "truncate", "splice", "header", "segment"], [2, 3, 1, 1, 2, 3])[0]
    if kind == "flip":
        return kind, flip_bits(rng, data, False)
    if kind == "flip_crc":
        return kind, flip_bits(rng, data, True)
    if kind == "truncate":
        return kind, truncate(rng, data)
    if kind == "splice":
        return kind, splice(rng, data, rng.choice(seeds))
    if kind == "header":
        return kind, forge_header(rng, data)
    return kind, forge_segment(rng, data)


# ---------------------------------------------------------------- running children

class Child:
    """One decoding child fed paths on stdin; its report lines arrive on a queue."""

    def __init__(self, model: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(model)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})  # one per child: no oversubscription
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)
        self.peak_rss = 0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def rss(self) -> int:
        try:
            rss = self.ps.memory_info().rss
        except psutil.Error:
            return 0
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_batch(model: Path, paths: list[str], timeout: float, max_rss: int, start_timeout: float) -> tuple[dict, int]:
    """Outcome per path; a crashed, hung or bloated child is replaced and the batch goes on."""
    results: dict[str, tuple[str, float, str]] = {}
    peak = 0
    todo = list(paths)
    while todo:
        child = Child(model)
        current, since, ready = None, time.monotonic(), False
        try:
            while True:
                try:
                    line = child.lines.get(timeout=0.05)
                except queue.Empty:
                    line = ""
                now = time.monotonic()
                if line is None:  # the child died
                    code = child.proc.wait()
                    if current is not None:
                        results[current] = ("crash", now - since, f"exit {code}")
                        todo.remove(current)
                    elif not ready:
                        raise SystemExit(f"decoder child failed to start (exit {code})")
                    break
                if line.startswith("READY"):
                    ready = True
                    for p in todo:
                        child.proc.stdin.write(p + "\n")
                    child.proc.stdin.write("\n")
                    child.proc.stdin.flush()
                elif line.startswith("START "):
                    current, since = line[6:], now
                elif line.startswith("DONE "):
                    path, outcome, seconds, *detail = line[5:].split(" ", 3)
                    results[path] = (outcome, float(seconds), detail[0] if detail else "")
                    todo.remove(path)
                    current = None
                    if not todo:
                        break
                if current is not None and now - since > timeout:
                    results[current] = ("hang", now - since, f"over {timeout:.0f} s")
                    todo.remove(current)
                    break
                if current is not None and child.rss() > max_rss:
                    results[current] = ("memory", now - since, f"RSS {child.rss() / 2**20:.0f} MB")
                    todo.remove(current)
                    break
                if not ready and now - since > start_timeout:
                    raise SystemExit("decoder child did not start in time")
        finally:
            child.rss()
            peak = max(peak, child.peak_rss)
            child.kill()
    return results, peak


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per file before it counts as a hang")
    ap.add_argument("--max-rss-mb", type=int, default=2048)
    ap.add_argument("--keep", type=Path, default=None, help="copy failing files here")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="texpress-fuzz-") as tmp:
        work = Path(tmp)
        model = work / "lite.ckpt"
        from texpress.codec.checkpoint import build_model, save_checkpoint
        from texpress.codec.config import get_preset

        save_checkpoint(build_model(get_preset("lite"), seed=0), model)
        seeds = make_seeds(model, work / "seeds")
        rng = random.Random(args.seed)
        kinds: dict[str, str] = {}
        for i in range(args.files):
            kind, data = mutate(rng, seeds)
            path = work / "cases" / f"{i:05d}-{kind}.tpx"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            kinds[str(path)] = kind
        paths = sorted(kinds)
        batches = [paths[i: i + args.batch] for i in range(0, len(paths), args.batch)]
        results: dict[str, tuple[str, float, str]] = {}
        peaks: list[int] = []
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not batches:
                        return
                    batch = batches.pop(0)
                res, peak = run_batch(model, batch, args.timeout, args.max_rss_mb << 20, 600.0)
                with lock:
                    results.update(res)
                    peaks.append(peak)
                    done = len(results)
                print(f"  {done}/{len(paths)} files", file=sys.stderr, flush=True)

        threads = [threading.Thread(target=worker) for _ in range(max(1, args.workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes = Counter(r[0] for r in results.values())
        by_kind: dict[str, Counter] = {}
        for path, (outcome, _, _) in results.items():
            by_kind.setdefault(kinds[path], Counter())[outcome] += 1
        failures = [{"file": Path(p).name, "outcome": o, "seconds": round(s, 3), "detail": d}
                    for p, (o, s, d) in sorted(results.items()) if o in BAD]
        if args.keep and failures:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in failures:
                shutil.copy(work / "cases" / f["file"], args.keep / f["file"])
        refusals = Counter(r[2].split(" (")[0] if r[0] == "refused" else r[0] for r in results.values())
        decode_times = sorted(r[1] for r in results.values() if r[0] in ("decoded", "refused"))
    result = {
        "files": len(results), "seed": args.seed, "outcomes": {k: outcomes.get(k, 0) for k in ("decoded", "refused", *BAD)},
        "by_mutation": {k: dict(v) for k, v in sorted(by_kind.items())},
        "messages": dict(refusals.most_common(12)),
        "max_seconds_per_file": round(decode_times[-1], 3) if decode_times else None,
        "p99_seconds_per_file": round(decode_times[int(0.99 * (len(decode_times) - 1))], 3) if decode_times else None,
        "peak_child_rss_mb": round(max(peaks) / 2**20) if peaks else None,
        "limits": {"timeout_s": args.timeout, "max_rss_mb": args.max_rss_mb, "batch": args.batch},
        "slowest": [{"file": Path(p).name, "outcome": r[0], "seconds": round(r[1], 3)}
                    for p, r in sorted(results.items(), key=lambda kv: -kv[1][1])[:10]],
        "failures": failures[:50], "seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
    }
    print(f"{'outcome':<12}{'files':>8}")
    for k, v in result["outcomes"].items():
        print(f"{k:<12}{v:>8}")
    print(f"max {result['max_seconds_per_file']} s per file, peak child RSS {result['peak_child_rss_mb']} MB, "
          f"{result['seconds']} s in all")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
