"""Bulk compression of large image stores on Ray Data: resumable, nothing lost, scales with workers.

    config     BulkConfig: workers, GPUs, batch and shard sizes, limits, the S3 endpoint
    store      where outputs go: a local folder or an fsspec URL, every object written whole
    sources    plans the inputs into read units and reads a unit into rows (streamed, never unpacked)
    manifest   the per-input record in DEST (append-only parts, compacted at the end), errors.jsonl
    worker     the Ray Data actor class: one loaded codec per actor, codes a batch, writes outputs
    shards     WebDataset shards of .tpx records, written whole and byte-identical on every run
    job        run_bulk(): the Ray Data job, progress, manifest and report
    verify     decodes a sample (or all) and checks it against the originals
    (its commands, `texpress bulk compress|decompress|verify`, are texpress.cli.bulk)

Nothing is imported here, so `import texpress.bulk.X` stays cheap.
"""
