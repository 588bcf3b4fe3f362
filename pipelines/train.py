"""DVC stage `train`: train the codec on data/shards with Ray Train, tracked in MLflow (params: train, loader).

Outputs: models/model.ckpt (ready for `texpress compress --model`), models/train_metrics.json
(final validation bpp from the real bitstream, PSNR, MS-SSIM), models/train_curves.tsv and
models/curves/*.png (rate, distortion and rate-distortion loss against iterations). With
registry.register_on_train the trained model is registered in the MLflow model registry right away
(the `register` stage finds that version again by fingerprint).
"""

from __future__ import annotations

import sys
import warnings

from texpress.console import err_console, fail, out_console
from texpress.errors import TexpressError

PARAMS = "params.yaml"
SHARDS = "data/shards"
OUT = "models"


def main() -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    from texpress.data.config import LoaderConfig
    from texpress.params import load_params
    from texpress.registry.refs import resolve_checkpoint
    from texpress.train.config import TrainConfig
    from texpress.train.ray_driver import run_training, summary_table

    try:
        cfg = TrainConfig.from_dict(load_params(PARAMS, "train"))
        loader_cfg = LoaderConfig.from_dict(load_params(PARAMS, "loader"))
        err_console.print(f"training preset {cfg.preset}: {cfg.rd_steps} rate-distortion + {cfg.gan_steps} "
                          f"adversarial steps on {cfg.workers} worker(s)", highlight=False)
        init_from = None
        if cfg.init_from:  # a checkpoint, a shipped model's name or models:/NAME@ALIAS
            err_console.print(f"warm start from {cfg.init_from}", highlight=False)
            init_from = resolve_checkpoint(cfg.init_from)
        outcome = run_training(cfg, loader_cfg, SHARDS, OUT, init_from=init_from)
    except TexpressError as exc:
        return fail(str(exc)).exit_code
    out_console.print(summary_table(outcome))
    return register(outcome)


def register(outcome) -> int:
    """Register the trained model when params say so (registry.register_on_train)."""
    from texpress.params import load_params
    from texpress.registry.config import RegistryConfig
    from texpress.registry.register import register_checkpoint

    try:
        cfg = RegistryConfig.from_dict(load_params(PARAMS, "registry"))
        if cfg.register_on_train:
            r = register_checkpoint(outcome.model_path, tracking_uri=outcome.tracking_uri,
                                    run_id=outcome.mlflow_run_id or None, cfg=cfg)
            out_console.print(f"registered {r.name} version {r.version}", highlight=False)
    except TexpressError as exc:
        return fail(str(exc)).exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
