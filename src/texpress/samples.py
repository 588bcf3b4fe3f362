"""The embedded default data: real photos that ship inside scikit-image and scikit-learn.

They are on every machine that installs texpress, so the default pipeline and the tests never
need a download."""

from __future__ import annotations

from pathlib import Path

SKIMAGE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "brick.png", "grass.png", "gravel.png",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


def sample_photos() -> list[Path]:
    """Paths of the bundled sample photos, in a fixed order."""
    import skimage.data
    import sklearn.datasets

    skimage_dir = Path(skimage.data.__file__).parent
    sklearn_dir = Path(sklearn.datasets.__file__).parent / "images"
    paths = [skimage_dir / n for n in SKIMAGE_PHOTOS] + [sklearn_dir / n for n in SKLEARN_PHOTOS]
    return [p for p in paths if p.is_file()]
