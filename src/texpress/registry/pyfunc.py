"""The codec as an MLflow pyfunc model: the checkpoint is an artifact (config + tensors, never a
pickled module), and the wrapper is logged as code (MLflow "models from code": a two-line script
that imports `TexpressModel` from this package), so nothing at all is pickled.

Input: a DataFrame with one column `data`, each row an image file (PNG, JPEG, ...) or a .tpx file,
base64-encoded. Param `mode`: `compress` (default) or `decompress`. Output: one row per input with
`data` (base64 .tpx bytes, or a base64 PNG), `width`, `height`, `bpp` (of the .tpx) and `error`
(empty when the row worked; a bad row does not fail the others).

    model = mlflow.pyfunc.load_model("models:/texpress-lite@champion")
    out = model.predict(pd.DataFrame({"data": [b64(png_bytes)]}))              # -> .tpx
    img = model.predict(pd.DataFrame({"data": out["data"]}), params={"mode": "decompress"})
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from texpress import __version__
from texpress.codec.api import Codec, bits_per_pixel
from texpress.errors import TexpressError

ARTIFACT = "checkpoint"
MODEL_DIR = "texpress_model"
MODES = ("compress", "decompress")
OUTPUT_COLUMNS = ("data", "width", "height", "bpp", "error")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class TexpressModel(mlflow.pyfunc.PythonModel):
    """predict: compress images to .tpx bytes or restore them (module docstring)."""

    def load_context(self, context) -> None:
        self.codec = Codec.from_checkpoint(context.artifacts[ARTIFACT])

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import pandas as pd

        mode = (params or {}).get("mode", "compress")
        if mode not in MODES:
            raise ValueError(f"mode must be compress or decompress, got {mode!r}")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame({"data": list(model_input)})
        rows = [self._one(value, mode) for value in frame["data"]]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))

    def _one(self, value: Any, mode: str) -> dict[str, Any]:
        try:
            raw = value if isinstance(value, bytes) else _unbase64(value)
            if mode == "compress":
                image = self.codec.load(raw)
                data = self.codec.encode(image)
                w, h, bpp = image.width, image.height, bits_per_pixel(len(data), image.width, image.height)
            else:
                restored = self.codec.decompress(raw)
                buf = io.BytesIO()
                restored.save(buf, format="PNG")
                data, (w, h) = buf.getvalue(), restored.size
                bpp = bits_per_pixel(len(raw), w, h)
            return {"data": b64(data), "width": w, "height": h, "bpp": float(bpp), "error": ""}
        except (TexpressError, ValueError) as exc:  # bad base64, not an image, wrong model: this row only
            return {"data": "", "width": 0, "height": 0, "bpp": float("nan"), "error": str(exc).splitlines()[0]}


def _unbase64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 data ({exc})") from None


def example_png(width: int = 64, height: int = 48) -> bytes:
    """A small deterministic colour image: the input example of the signature."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x ^ y) & 255], -1)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def pip_requirements() -> list[str]:
    """This package, at this version (it brings torch, compressai and the rest as its dependencies)."""
    return [f"texpress=={__version__}"]


MODEL_CODE = (
    '"""MLflow model code: the texpress codec wrapper (weights come from the checkpoint artifact)."""\n'
    "import mlflow.models\n\nfrom texpress.registry.pyfunc import TexpressModel\n\n"
    "mlflow.models.set_model(TexpressModel())\n"
)


def save_pyfunc(checkpoint: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the MLflow model folder (MLmodel, signature, input example, checkpoint artifact) to `path`.

    The checkpoint is stored as `artifacts/model<suffix>`; its fingerprint goes into the metadata."""
    import warnings

    import pandas as pd
    from mlflow.models import infer_signature

    codec = Codec.from_checkpoint(checkpoint)
    example = pd.DataFrame({"data": [b64(example_png())]})
    probe = TexpressModel()
    probe.codec = codec
    output = probe.predict(None, example)
    with tempfile.TemporaryDirectory(prefix="texpress-pyfunc-") as tmp:
        staged = Path(tmp) / f"model{Path(checkpoint).suffix or '.ckpt'}"
        shutil.copyfile(checkpoint, staged)
        code = Path(tmp) / "texpress_model_code.py"
        code.write_text(MODEL_CODE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # integer columns: widths are never missing
            signature = infer_signature(example, output, params={"mode": "compress"})
            mlflow.pyfunc.save_model(path=str(path), python_model=str(code), artifacts={ARTIFACT: str(staged)},
                                     signature=signature, input_example=example,
                                     pip_requirements=pip_requirements(),
                                     metadata={"texpress_fingerprint": codec.fingerprint})
    return Path(path)
