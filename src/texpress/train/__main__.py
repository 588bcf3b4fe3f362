"""`python -m texpress.train`: the single-process trainer without the `texpress` command, for a GPU
box with only torch, compressai and pytorch-msssim (docs/training.md). The options are those of
`texpress train` (texpress.train.options), with --backend torch as the default."""

from __future__ import annotations

import sys
import warnings

from texpress.errors import TexpressError
from texpress.train.options import argument_parser, plan


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    warnings.filterwarnings("ignore", message="Using padding='same'")
    from texpress.train.single_process import summary_lines, train_single  # loads torch: after the filters

    parser = argument_parser("python -m texpress.train", "Train the codec in this process (one GPU or the CPU).")
    values = vars(parser.parse_args(argv))
    try:
        p = plan(values, local_params=False)
        if p.backend != "torch":
            raise TexpressError("python -m texpress.train trains in this process: use `texpress train` for Ray")
        print(p.start_line(), file=sys.stderr)
        outcome = train_single(p.cfg, p.loader_cfg, values["out"], images=values["images"], shards=values["shards"],
                               val=values["val"], init_from=p.init_from, device=values["device"], amp=p.amp,
                               time_limit=values["time_limit"], mlflow=not values["no_mlflow"])
    except TexpressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print("\n".join(summary_lines(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
