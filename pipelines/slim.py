"""DVC stage `slim`: a pruned, distilled variant of the trained model (params: slim, train, loader).

Prunes models/model.ckpt (texpress slim prune: slim.ratio of the generator's channels by magnitude,
then slim.config_changes), and distills the student against it for slim.steps steps with the
single-process trainer on data/shards (texpress slim distill; a generator-only student keeps the
teacher's latent and decodes its files). Outputs: models/slim/model.ckpt and
models/slim/train_metrics.json; the run is logged to MLflow like the train stage's.
"""

from __future__ import annotations

import sys
import warnings

from texpress.console import err_console, fail, out_console
from texpress.errors import TexpressError

PARAMS = "params.yaml"
TEACHER = "models/model.ckpt"
SHARDS = "data/shards"
OUT = "models/slim"


def main() -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    from texpress.codec.checkpoint import load_model
    from texpress.data.config import LoaderConfig
    from texpress.params import load_params
    from texpress.slim.config import SlimConfig
    from texpress.slim.distill import distill_config, record_student_meta, write_student
    from texpress.slim.prune import prune_model
    from texpress.slim.students import student_config, student_from_teacher
    from texpress.train.config import TrainConfig
    from texpress.train.distill import decode_compatible
    from texpress.train.single_process import summary_lines, train_single

    try:
        cfg = SlimConfig.from_dict(load_params(PARAMS, "slim"))
        train_cfg = TrainConfig.from_dict(load_params(PARAMS, "train"))
        loader_cfg = LoaderConfig.from_dict(load_params(PARAMS, "loader"))
        teacher = load_model(TEACHER)
        model = prune_model(teacher, cfg.ratio, cfg.part).model
        if cfg.config_changes:
            model = student_from_teacher(model, student_config(cfg.config_changes, model.config))
        trainable = "generator" if cfg.part == "generator" else "all"
        meta = {"slim": {"pruned": {"ratio": cfg.ratio, "part": cfg.part, "criterion": cfg.criterion},
                         "set": cfg.config_changes or "", "decode_compatible": decode_compatible(model, teacher)}}
        init = write_student(model, OUT, meta)
        err_console.print(f"slim: {cfg.ratio:.0%} of the {cfg.part} channels pruned -> generator widths "
                          f"{'-'.join(map(str, model.config.gen_widths))}; distilling {cfg.steps} steps", highlight=False)
        run_cfg = distill_config(train_cfg.replace(rd_steps=cfg.steps, gan_steps=0, disc_warmup_steps=0, warmup_steps=0,
                                                   lr=cfg.lr), TEACHER, trainable, weight=cfg.distill_weight,
                                 feature_weight=cfg.feature_weight)
        # float32 on every CPU: the stage's output (and dvc.lock) must not depend on the CPU's bfloat16 support
        outcome = train_single(run_cfg, loader_cfg, OUT, shards=SHARDS, init_from=init, amp=False)
        record_student_meta(outcome.model_path, meta)
    except TexpressError as exc:
        return fail(str(exc)).exit_code
    for line in summary_lines(outcome):
        out_console.print(line, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
