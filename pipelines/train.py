"""DVC stage `train`: train the codec on data/shards with Ray Train, tracked in MLflow (params: train, loader).

Outputs: models/model.ckpt (ready for `texpress compress --model`), models/train_metrics.json
(final validation bpp from the real bitstream, PSNR, MS-SSIM), models/train_curves.tsv and
models/curves/*.png (rate, distortion and rate-distortion loss against iterations).
"""

from __future__ import annotations

import sys
import warnings

from texpress.console import err_console, fail, out_console
from texpress.errors import TexpressError

PARAMS = "params.yaml"
SHARDS = "data/shards"
OUT = "models"


def _accept_model_refs() -> None:
    """A warm start (train.init_from, whose architecture replaces train.preset) may name
    models:/NAME@ALIAS: let checkpoint readers resolve it through the registry."""
    try:
        from texpress.registry.refs import install
    except ImportError:  # an install without the registry layer: plain paths only
        return
    install()


def main() -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    from texpress.data.config import LoaderConfig
    from texpress.params import load_params
    from texpress.train.commands import summary_table
    from texpress.train.config import TrainConfig
    from texpress.train.trainer import run_training

    try:
        cfg = TrainConfig.from_dict(load_params(PARAMS, "train"))
        loader_cfg = LoaderConfig.from_dict(load_params(PARAMS, "loader"))
        err_console.print(f"training preset {cfg.preset}: {cfg.rd_steps} rate-distortion + {cfg.gan_steps} "
                          f"adversarial steps on {cfg.workers} worker(s)", highlight=False)
        if cfg.init_from:
            _accept_model_refs()
            err_console.print(f"warm start from {cfg.init_from}", highlight=False)
        outcome = run_training(cfg, loader_cfg, SHARDS, OUT, init_from=cfg.init_from)
    except TexpressError as exc:
        return fail(str(exc)).exit_code
    out_console.print(summary_table(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
