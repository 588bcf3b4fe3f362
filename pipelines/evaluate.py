"""DVC stage `evaluate`: the trained model against the classical codecs on the test split (params: evaluate).

Reads models/model.ckpt, its slim variant models/slim/model.ckpt (the curve `slim`, beside its teacher's)
and the test shards (data/shards/test/shard-*.tar), writes reports/eval/:
metrics.json (declared as DVC metrics), rd.csv and the PNG figures (declared as DVC plots),
summary.json, per_image.csv and curves/*.json. With MLflow: the numbers and figures go to the run
named by $MLFLOW_RUN_ID, else (evaluate.mlflow: true) to the run that trained the checkpoint (the
run tagged with its fingerprint) when the tracking store ($MLFLOW_TRACKING_URI, else ./mlflow.db)
has it.
"""

from __future__ import annotations

import os
import sys
import warnings

from texpress.console import EXIT_FAILED_ITEMS, fail, report_item_error, warn
from texpress.errors import TexpressError

PARAMS = "params.yaml"
MODEL = "models/model.ckpt"
SLIM_MODEL = "models/slim/model.ckpt"
TEST_SHARDS = "data/shards/test"
OUT = "reports/eval"


def _training_run(model: str, tracking_uri: str) -> str | None:
    """The MLflow run that trained the checkpoint, if the tracking store has it (found by fingerprint)."""
    from mlflow.tracking import MlflowClient

    from texpress.codec.checkpoint import read_checkpoint
    from texpress.evaluate.tracking import find_training_run
    from texpress.mlstore import sqlite_store_missing

    if sqlite_store_missing(tracking_uri):
        return None  # no store yet: do not create one
    payload = read_checkpoint(model)
    return find_training_run(MlflowClient(tracking_uri), payload.get("fingerprint"),
                             (payload.get("meta") or {}).get("mlflow_run_id"))


def main() -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    from texpress.evaluate.config import EvalConfig, ModelSpec
    from texpress.evaluate.display import print_summary, progress_bar
    from texpress.evaluate.run import run_eval
    from texpress.mlstore import default_tracking_uri
    from texpress.params import load_params

    try:
        cfg = EvalConfig.from_dict(load_params(PARAMS, "evaluate"))
        uri = default_tracking_uri()
        run_id = os.environ.get("MLFLOW_RUN_ID") or (_training_run(MODEL, uri) if cfg.mlflow else None)
        outcome = run_eval([TEST_SHARDS], [ModelSpec.parse(MODEL), ModelSpec.parse(f"slim={SLIM_MODEL}")], cfg, OUT, mlflow_run_id=run_id,
                           tracking_uri=uri, on_error=report_item_error, on_warning=warn, progress=progress_bar())
        print_summary(outcome)
    except TexpressError as exc:
        return fail(str(exc)).exit_code
    if outcome.failures:
        return fail(f"{outcome.failures} failure(s) while evaluating; see {OUT}/summary.json",
                    EXIT_FAILED_ITEMS).exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
