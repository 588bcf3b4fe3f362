"""What `texpress registry list` shows: one row per model version with its aliases and key tags."""

from __future__ import annotations

from typing import Any

from texpress.registry.store import LOCK_SUFFIX, RegistryError, check_ref_name, mlflow_errors, open_store
from texpress.registry.tags import FINGERPRINT


def _num(tags: dict[str, str], key: str, spec: str, suffix: str = "") -> str:
    try:
        return format(float(tags[key]), spec) + suffix
    except (KeyError, ValueError):
        return "-"


def list_versions(name: str | None = None, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Rows (newest version first per model) of `name`, or of every registered texpress model."""
    store = open_store(tracking_uri, create=False)
    client = store.client()
    rows = []
    with mlflow_errors("listing the registry"):
        if name is not None:
            check_ref_name(name, name)
            if not client.search_registered_models(filter_string=f"name = '{name}'"):
                raise RegistryError(f"no registered model {name!r}")
            names = [name]
        else:
            names = sorted(m.name for m in client.search_registered_models() if not m.name.endswith(LOCK_SUFFIX))
        for n in names:
            aliases: dict[str, list[str]] = {}
            for alias, version in client.get_registered_model(n).aliases.items():
                aliases.setdefault(str(version), []).append(alias)
            versions = client.search_model_versions(f"name = '{n}'")
            for mv in sorted(versions, key=lambda v: -int(v.version)):
                tags = mv.tags or {}
                if FINGERPRINT not in tags:
                    continue
                rows.append({
                    "name": n, "version": str(mv.version),
                    "aliases": ", ".join(f"@{a}" for a in sorted(aliases.get(str(mv.version), []))),
                    "fingerprint": tags[FINGERPRINT][:12], "preset": tags.get("texpress.preset", "-"),
                    "kmac": _num(tags, "texpress.decoder_kmac_per_px", ".1f"),
                    "bpp": _num(tags, "eval.bpp", ".3f"), "psnr": _num(tags, "eval.psnr-rgb", ".2f"),
                    "ms_ssim": _num(tags, "eval.ms-ssim-rgb", ".4f"),
                    "texture": _num(tags, "eval.texture-distance", ".3f"),
                    "bd_jpeg": _num(tags, "eval.bd_rate.jpeg.psnr-rgb", "+.1f", "%"),
                    "decision": tags.get("promotion.outcome", "-") + (
                        f" vs {tags['promotion.against']}" if "promotion.against" in tags else ""),
                    "tags": tags,
                })
    return rows
