"""Train/val/test assignment from the content hash alone.

An image's split depends only on its own pixels (the sha256 from validate.py) and the two
fractions, never on the other images, so it keeps its split when images are added or removed.
The first 64 bits of the hash, read as a number in [0, 1), fall into test if below test_frac,
into val if below test_frac + val_frac, and into train otherwise.
"""

from __future__ import annotations

SPLITS = ("train", "val", "test")


def hash_fraction(sha256_hex: str) -> float:
    """The content hash as a number in [0, 1)."""
    return int(sha256_hex[:16], 16) / float(1 << 64)


def assign_split(sha256_hex: str, val_frac: float, test_frac: float) -> str:
    u = hash_fraction(sha256_hex)
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"
