"""Inputs of a bulk job: SOURCE arguments planned into read units, and a unit read into rows.

Reading and its safety rules are texpress.data.sources' (archives streamed, never unpacked;
'..', absolute paths, links and special files refused; files above the size limit left unread).
Here the driver only lists (names, not bytes) and cuts the work into units: a chunk of loose files,
or one archive. Each unit is read inside a Ray task, so reading scales with the cluster.

Keys: an input's path relative to its SOURCE ('sub/a.jpg'); members of an archive found inside
a folder go under the archive's name ('sub/batch.tar/dir/a.jpg'); members of an archive given as
SOURCE keep their archive path ('dir/a.jpg'). With several SOURCEs each key starts with its
SOURCE's name. WebDataset sources group tar members into samples (by key, as webdataset does).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Any, Iterator

from texpress.bulk.config import WEBDATASET, BulkConfig
from texpress.bulk.manifest import BOOKKEEPING, DONE
from texpress.data import storage
from texpress.data.sources import MISSING, UNREADABLE, Item, SourceReader, is_archive
from texpress.data.validate import IMAGE_EXTS
from texpress.errors import ConfigError

COMPRESS, DECOMPRESS = "compress", "decompress"
TODO, SKIP, FAILED, END = "todo", "skip", "failed", "end"
_PLANNED = "_planned"


@dataclass
class Unit:
    """One read task: loose files (local paths or URLs) or a single archive."""

    index: int
    root: str
    prefix: str
    paths: list[str] = field(default_factory=list)
    rejects: list[dict[str, str]] = field(default_factory=list)  # found while listing: links, missing, ...

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Unit":
        return cls(**json.loads(text))


class _Lister(SourceReader):
    """data.sources' folder walk (links, special files, unreadable entries refused), without reading files."""

    def _iter_local_file(self, path: str, label: str, size: int, top_level: bool) -> Iterator[Item]:
        yield Item(label, os.path.basename(label), reason=_PLANNED, detail=path)


def resolve_root(source: str) -> str:
    """Local paths made absolute (the manifest must find them again), URLs kept."""
    if storage.is_url(source) and not source.startswith("file://"):
        return source.rstrip("/") or source
    return os.path.abspath(storage.local_path(source))


def _root_name(root: str) -> str:
    return root.rstrip("/").rsplit("/", 1)[-1]


def key_of(root: str, prefix: str, label: str) -> str:
    """The relative key of an item read from `root` (see the module docstring)."""
    outer, _, member = label.partition("::")
    while member.startswith("./"):
        member = member[2:]
    rel = outer[len(root):].lstrip("/") if outer.startswith(root) else _root_name(outer)
    parts = [p for p in (prefix, rel, member) if p]
    return "/".join(parts) if parts else _root_name(root)


def _top_level(root: str, label: str) -> str:
    return key_of(root, "", label).split("/", 1)[0]


def plan(sources: list[str], config: BulkConfig, chunk: int) -> list[Unit]:
    """The read units of all SOURCEs, in a fixed order (the same store always gives the same units)."""
    roots = [resolve_root(s) for s in sources]
    prefixes = [_root_name(r) for r in roots] if len(roots) > 1 else [""]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError("two SOURCEs have the same name; their outputs would collide")
    units: list[Unit] = []
    for root, prefix in zip(roots, prefixes):
        files, rejects = (_list_url if storage.is_url(root) else _list_local)(root, config)
        if rejects:
            units.append(Unit(len(units), root, prefix, rejects=rejects))
        loose = [f for f in files if not is_archive(f)]
        for start in range(0, len(loose), chunk):
            units.append(Unit(len(units), root, prefix, paths=loose[start:start + chunk]))
        for archive in (f for f in files if is_archive(f)):
            units.append(Unit(len(units), root, prefix, paths=[archive]))
    return units


def _list_local(root: str, config: BulkConfig) -> tuple[list[str], list[dict[str, str]]]:
    if os.path.isfile(root):
        return [root], []
    files, rejects = [], []
    for item in _Lister(config.max_file_bytes).iter_source(root):
        if _top_level(root, item.source) in BOOKKEEPING:
            continue
        if item.reason == _PLANNED:
            files.append(item.detail)
        else:
            rejects.append({"source": item.source, "reason": item.reason, "detail": item.detail})
    return files, rejects


def _list_url(root: str, config: BulkConfig) -> tuple[list[str], list[dict[str, str]]]:
    try:
        fs, path = storage.url_to_fs(root, config.endpoint_url)
        path = path.rstrip("/")
        fs.invalidate_cache(path)
        if fs.isfile(path):
            return [root], []
        keys = sorted(fs.find(path)) if fs.isdir(path) else []
    except Exception as exc:  # network, credentials, missing bucket: the source fails, the job goes on
        return [], [{"source": root, "reason": UNREADABLE, "detail": str(exc).strip().splitlines()[0]}]
    if not keys:
        return [], [{"source": root, "reason": MISSING, "detail": "no objects under this prefix"}]
    urls = [f"{root}/{k[len(path) + 1:]}" for k in keys]
    return [u for u in urls if _top_level(root, u) not in BOOKKEEPING], []


# -- reading a unit (inside a Ray task) -----------------------------------------------------------

def _samples(items: Iterator[Item], mode: str) -> Iterator[tuple[Item, str | None]]:
    """WebDataset: consecutive members with the same key form a sample; (chosen member, original key)."""
    def group_key(item: Item) -> str:
        outer, _, member = item.source.partition("::")
        head, _, base = member.rpartition("/")
        return f"{outer}::{head}/{base.split('.', 1)[0]}"

    exts = ("tpx",) if mode == DECOMPRESS else IMAGE_EXTS
    group: list[Item] = []
    for item in chain(items, [None]):
        if group and (item is None or item.reason or group_key(item) != group_key(group[0])):
            by_ext = {g.source.rsplit(".", 1)[-1].lower(): g for g in group}
            chosen = next((by_ext[e] for e in exts if e in by_ext), None)
            original = None
            if "json" in by_ext and mode == DECOMPRESS:
                try:
                    original = json.loads(by_ext["json"].data or b"{}").get("key")
                except (ValueError, AttributeError):
                    original = None
            if chosen is None:
                first = group[0]
                want = ".tpx record" if mode == DECOMPRESS else "image"
                chosen = Item(first.source.rsplit(".", 1)[0], first.name, reason="no_image", detail=f"sample has no {want}")
            yield chosen, original if isinstance(original, str) else None
            group = []
        if item is not None and item.reason:
            yield item, None
        elif item is not None:
            group.append(item)


def _row(unit: Unit, index: int, key: str, source: str, status: str, **extra: Any) -> dict[str, Any]:
    row = {"unit": unit.index, "index": index, "key": key, "source": source, "status": status, "sha256": "",
           "size_in": 0, "data": None, "reason": "", "detail": "", "count": 0}
    row.update(extra)
    return row


def _items(unit: Unit, config: BulkConfig, mode: str) -> Iterator[tuple[Item, str | None]]:
    for reject in unit.rejects:
        yield Item(reject["source"], "", reason=reject["reason"], detail=reject["detail"]), None
    reader = SourceReader(config.max_file_bytes, config.endpoint_url)
    items = chain.from_iterable(reader.iter_source(p) for p in unit.paths)
    if config.source_format == WEBDATASET:
        yield from _samples(items, mode)
    else:
        yield from ((item, None) for item in items)


def unit_rows(unit: Unit, config: BulkConfig, mode: str, done: dict[str, tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Every input of `unit` as a row (todo, skip or failed), then one END row with the count.

    `done` maps key -> (status, sha256) from the manifest. Rows are decided in parts of shard_size:
    for shard destinations a part is skipped only when all its inputs are recorded unchanged."""
    whole_parts = config.dest_format == WEBDATASET
    seen: set[str] = set()
    part: list[dict[str, Any]] = []
    count = 0
    for index, (item, original) in enumerate(_items(unit, config, mode)):
        key = original or key_of(unit.root, unit.prefix, item.source)
        count = index + 1
        if item.reason:
            row = _row(unit, index, key, item.source, FAILED, reason=item.reason, detail=item.detail)
        elif key in seen:
            row = _row(unit, index, f"{key}#{index}", item.source, FAILED, reason="duplicate_key",
                       detail=f"{key} appears twice in this source; only the first is coded")
        elif mode == DECOMPRESS and config.source_format != WEBDATASET and not key.endswith(".tpx"):
            row = _row(unit, index, key, item.source, FAILED, reason="not_tpx", detail="not a .tpx file")
        else:
            sha = hashlib.sha256(item.data).hexdigest()
            row = _row(unit, index, key, item.source, TODO, sha256=sha, size_in=len(item.data), data=item.data)
        seen.add(row["key"])
        part.append(row)
        if len(part) == config.shard_size:
            yield from _decide(part, done, whole_parts)
            part = []
    yield from _decide(part, done, whole_parts)
    yield _row(unit, -1, "", unit.root, END, count=count)


def _decide(part: list[dict[str, Any]], done: dict[str, tuple[str, str]], whole: bool) -> Iterator[dict[str, Any]]:
    if whole:
        unchanged = all(done.get(r["key"], ("", None))[1] == r["sha256"] for r in part)
        skip = lambda r: unchanged  # noqa: E731
    else:
        skip = lambda r: r["status"] == TODO and done.get(r["key"]) == (DONE, r["sha256"])  # noqa: E731
    for row in part:
        if skip(row):
            row.update(status=SKIP, data=None)
        yield row
