"""The data layer: raw image stores -> validated, deduplicated, split WebDataset shards -> loaders.

    sources    folders, tar/zip archives and fsspec URLs as a stream of items (unsafe entries refused)
    validate   full decode, rejection categories, pixel hash
    dedupe     exact duplicates by pixel hash
    split      train/val/test from the content hash
    shards     deterministic ShardWriter output
    ingest     the one-pass pipeline that ties them together; manifest: counts, hashes, dataset_version
    loader     WebDataset training and validation loaders (DDP ranks x DataLoader workers)
    prepare    the DVC `prepare` stage (the commands, `texpress data ingest|stats`, are texpress.cli.data)

Nothing is imported here, so `import texpress.data.X` stays cheap (only loader imports torch).
"""
