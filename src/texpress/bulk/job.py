"""run_bulk(): compress or decompress a whole image store on Ray Data, resumably.

    read units (driver lists) -> flat_map(read a unit: rows with bytes and sha256; a few tasks at once)
      -> map_batches(CodecWorker, ActorPoolStrategy(size=workers)): one codec per actor, outputs written whole
      -> driver: manifest parts, shards (WebDataset destination), progress, report

A re-run of the same job reads the manifest first and skips every input recorded as done with the
same checksum; outputs are written only when complete and .tpx encoding is deterministic, so a
run killed at any moment and run again gives the same outputs as one that never stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from texpress.bulk import manifest as mf
from texpress.bulk.config import FILES, WEBDATASET, BulkConfig
from texpress.bulk.report import BulkReport
from texpress.bulk.shards import ShardAssembler
from texpress.bulk.sources import COMPRESS, DECOMPRESS, END, SKIP, Unit, plan, resolve_root, unit_rows
from texpress.bulk.store import Store
from texpress.bulk.worker import CodecWorker
from texpress.codec.checkpoint import read_checkpoint
from texpress.codec.refine import objective_for
from texpress.codec.shipped import by_fingerprint
from texpress.data import storage
from texpress.errors import ConfigError, TexpressError
from texpress.registry.refs import resolve_checkpoint

ENV_RAY_ADDRESS = "RAY_ADDRESS"
Progress = Callable[[BulkReport], None]


@contextmanager
def ray_session(config: BulkConfig) -> Iterator[None]:
    """Uses the Ray this process joined, else the cluster at $RAY_ADDRESS, else starts a local one."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = os.environ.get(ENV_RAY_ADDRESS)
    temp_dir = None
    if address:
        ray.init(address=address, logging_config=ray.LoggingConfig(log_level="ERROR"))
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        temp_dir = tempfile.mkdtemp(prefix="tx-bulk-", dir="/tmp" if os.path.isdir("/tmp") else None)
        cpus = max(os.cpu_count() or 1, int(config.workers * config.cpus_per_worker + 0.999))
        ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=temp_dir,
                 logging_config=ray.LoggingConfig(log_level="ERROR"),
                 runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::FutureWarning"}})
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _read_unit(row: dict[str, Any], config: BulkConfig, mode: str, done: list) -> Iterator[dict[str, Any]]:
    import ray

    return unit_rows(Unit.from_json(row["unit"]), config, mode, ray.get(done[0]))


def _check_settings(store: Store, settings: dict[str, Any]) -> None:
    """A destination holds one job's outputs: the same mode, model and layout on every re-run."""
    if store.exists(mf.SETTINGS):
        try:
            before = json.loads(store.get(mf.SETTINGS))
        except ValueError:
            before = {}
        for name in ("mode", "model", "dest_format", "shard_size", "effort", "quality"):
            if before.get(name, 0 if name == "effort" else None) != settings[name]:
                raise ConfigError(f"{store.root} holds a bulk job with {name} {before.get(name)!r}, not "
                                  f"{settings[name]!r}; use another destination")
    store.put(mf.SETTINGS, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())


def _check_objective(checkpoint: Path) -> None:
    """Efforts above 0 need the model's rate weight: a model without one stops the job before it starts."""
    payload = read_checkpoint(checkpoint)
    try:
        entry = by_fingerprint(payload["fingerprint"]).info
    except TexpressError:
        entry = {}
    objective_for(payload["meta"], entry)


def _check_apart(sources: list[str], store: Store) -> None:
    """DEST inside a SOURCE would feed the outputs back in as inputs on the next run."""
    if not store.local:
        return
    dest = os.path.abspath(store.root)
    for source in sources:
        root = resolve_root(source)
        if not storage.is_url(root) and (dest == root or dest.startswith(root.rstrip("/") + "/")):
            raise ConfigError(f"the destination {store.root} is inside the source {source}; choose another one")


def detect_source_format(sources: list[str], config: BulkConfig) -> BulkConfig:
    """A bulk destination of WebDataset shards, given as SOURCE, is read as WebDataset."""
    for source in sources:
        try:
            settings = json.loads(Store(source, config.endpoint_url).get(mf.SETTINGS))
        except Exception:
            continue
        if settings.get("dest_format") == WEBDATASET:
            return config.replace(source_format=WEBDATASET)
    return config


def _record(row: dict[str, Any]) -> dict[str, Any]:
    effort = {"effort": int(row["effort"])} if row["status"] == mf.DONE and row.get("effort") else {}
    return {k: (row.get(k) if row.get(k) is not None else "") for k in mf.FIELDS} | {
        "size_in": int(row["size_in"]), "size_out": int(row.get("size_out") or 0),
        "pixels": int(row.get("pixels") or 0)} | effort


def _rows(batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
    keys = list(batch)
    for values in zip(*(batch[k] for k in keys)):
        yield {k: (v.item() if hasattr(v, "item") and not isinstance(v, (bytes, str)) else v) for k, v in zip(keys, values)}


def _dataset(units: list[Unit], mode: str, checkpoint: Path, dest: str, config: BulkConfig, done: dict):
    import ray
    from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

    gpus = ray.cluster_resources().get("GPU", 0)
    if config.gpus_per_worker and gpus < config.gpus_per_worker:
        raise ConfigError(f"--gpus-per-worker {config.gpus_per_worker} but the Ray cluster has {gpus:g} GPUs")
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-run execution-plan chatter
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows its own bar
    ctx.verbose_stats_logs = False
    ctx.target_max_block_size = 1 << 20  # small blocks: rows of one archive spread over the actors, steady progress
    ds = ray.data.from_items([{"unit": u.to_json()} for u in units], override_num_blocks=len(units))
    # readers reserve no CPU (the actors get the cores) but are few: with no bound Ray Data starts a task, and
    # soon a process, per unit; hundreds of them starve the actors and crashed Ray workers on 2 cores
    ds = ds.flat_map(_read_unit, fn_kwargs={"config": config, "mode": mode, "done": [ray.put(done)]}, num_cpus=0,
                     compute=TaskPoolStrategy(size=max(2, config.workers)))
    worker_args = {"mode": mode, "checkpoint": [ray.put(checkpoint.read_bytes())], "suffix": checkpoint.suffix,
                   "dest": dest, "config": config}
    return ds.map_batches(CodecWorker, fn_constructor_kwargs=worker_args, batch_size=config.batch_size,
                          batch_format="numpy", compute=ActorPoolStrategy(size=config.workers),
                          num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker or None)


def run_bulk(mode: str, sources: list[str], dest: str, model: str | Path | None, config: BulkConfig | None = None, *,
             on_progress: Progress | None = None) -> BulkReport:
    """Compress (mode "compress") or decompress SOURCEs into DEST with the model REF; returns the report,
    also written to DEST/report.json. Bad inputs are recorded (DEST/errors.jsonl), never raised."""
    if mode not in (COMPRESS, DECOMPRESS):
        raise ConfigError(f"mode must be {COMPRESS!r} or {DECOMPRESS!r}, got {mode!r}")
    if not sources:
        raise ConfigError("give at least one SOURCE")
    config = config or BulkConfig()
    if mode == DECOMPRESS:
        config = detect_source_format(sources, config).replace(dest_format=FILES)
    checkpoint = resolve_checkpoint(model)  # once, here: the workers get the file
    if mode == COMPRESS and config.effort and config.lam is None:
        _check_objective(checkpoint)
    if mode == COMPRESS and config.quality is not None and not read_checkpoint(checkpoint)["config"].get("rate_lambdas"):
        raise ConfigError("--quality needs a variable-rate model (texpress models list); this one has a single rate")
    store = Store(dest, config.endpoint_url)
    if store.local and Path(store.root).exists() and not Path(store.root).is_dir():
        raise ConfigError(f"{dest}: exists and is not a folder")
    _check_apart(sources, store)
    store.make_root()
    settings = {"mode": mode, "model": read_checkpoint(checkpoint)["fingerprint"], "dest_format": config.dest_format,
                "shard_size": config.shard_size, "sources": list(sources),
                "effort": config.effort if mode == COMPRESS else 0,
                "quality": config.quality if mode == COMPRESS else None}
    _check_settings(store, settings)
    report = BulkReport(mode=mode, sources=list(sources), dest=dest, model=settings["model"], workers=config.workers,
                        effort=settings["effort"])
    start = time.perf_counter()
    records = mf.load(store)
    done = {k: (r["status"], r["sha256"]) for k, r in records.items()}
    chunk = config.shard_size if config.dest_format == WEBDATASET else config.files_per_task
    units = plan(sources, config, chunk)
    recorder = mf.Recorder(store)
    if units:
        with ray_session(config):
            _consume(_dataset(units, mode, checkpoint, dest, config, done), config, store, recorder, records,
                     report, start, on_progress)
    recorder.flush()
    mf.compact(store, records)
    report.totals_from(records)
    report.finish(time.perf_counter() - start)
    store.put(mf.REPORT, report.to_json().encode())
    return report


def _consume(ds, config: BulkConfig, store: Store, recorder: mf.Recorder, records: dict, report: BulkReport,
             start: float, on_progress: Progress | None) -> None:
    """Drain the job's rows in the driver: record them (after their shard for shard destinations)."""
    assembler = ShardAssembler(store, config.shard_size) if config.dest_format == WEBDATASET else None
    coded_at: list[float] = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        finished = []
        for row in _rows(batch):
            if row["status"] == SKIP:
                report.skipped += 1
            elif row["status"] != END:
                report.coded += row["status"] == mf.DONE
                report.failed_now += row["status"] == mf.FAILED
                report.run_bytes_in += int(row["size_in"]) if row["status"] == mf.DONE else 0
                report.run_bytes_out += int(row.get("size_out") or 0)
                coded_at += [row["coded_at"]] if row["status"] == mf.DONE else []
            if assembler is not None:
                finished += [r for name, rows in assembler.add(row) for r in _shard_records(name, rows)]
            elif row["status"] not in (SKIP, END):
                finished.append(_record(row))
        for r in finished:
            records[r["key"]] = r
        recorder.add(finished)
        if coded_at:
            report.coding_span_s = round(max(coded_at) - min(coded_at), 3)
            coded_at = [min(coded_at), max(coded_at)]
        if on_progress is not None:
            report.finish(time.perf_counter() - start)
            on_progress(report)
    if assembler is not None and assembler.rows:
        raise RuntimeError(f"bulk job ended with unfinished shards: {sorted(assembler.rows)[:3]}")


def _shard_records(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_record({**r, "output": name if r["status"] == mf.DONE else ""}) for r in rows if r["status"] != SKIP]
