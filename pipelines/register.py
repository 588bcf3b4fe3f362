"""DVC stage `register`: register models/model.ckpt in the MLflow model registry and run the
promotion gate (params: registry; docs/registry.md).

Store: $MLFLOW_TRACKING_URI when set, else ./mlflow.db (artifacts in ./mlartifacts), where the train
stage logged the run. The version carries the evaluate stage's numbers (reports/eval/summary.json)
as eval.* tags; the gate evaluates it against @champion on registry.images (the test split) and
moves the aliases. The slim stage's variant (models/slim/model.ckpt) is registered too, under the
same name plus slim.register_suffix (`texpress registry promote` runs its gate on demand). Writes reports/registry/decision.json: the version and the decision (a record of
this run, not a DVC output: it depends on the registry's state, which DVC does not see).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from texpress.console import fail, out_console, report_item_error
from texpress.errors import TexpressError

PARAMS = "params.yaml"
MODEL = "models/model.ckpt"
SLIM_MODEL = "models/slim/model.ckpt"
SUMMARY = "reports/eval/summary.json"
OUT = Path("reports/registry/decision.json")


def main() -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    from texpress.evaluate.report import write_json
    from texpress.params import load_params
    from texpress.registry.config import RegistryConfig
    from texpress.registry.promote import print_decision, promote
    from texpress.registry.register import register_checkpoint

    try:
        cfg = RegistryConfig.from_dict(load_params(PARAMS, "registry"))
        registered = register_checkpoint(MODEL, eval_summary=SUMMARY, cfg=cfg)
        out_console.print(f"{'registered' if registered.created else 'already registered:'} {registered.name} "
                          f"version {registered.version}", highlight=False)
        from texpress.slim.config import SlimConfig

        suffix = SlimConfig.from_dict(load_params(PARAMS, "slim")).register_suffix
        slim = register_checkpoint(SLIM_MODEL, registered.name + suffix, eval_summary=SUMMARY, cfg=cfg)
        out_console.print(f"{'registered' if slim.created else 'already registered:'} {slim.name} "
                          f"version {slim.version} (the slim variant)", highlight=False)
        record = {"registered": asdict(registered), "slim": asdict(slim), "decision": None}
        if cfg.promote:
            decision = promote(registered.name, registered.version, cfg=cfg, on_error=report_item_error)
            print_decision(decision)
            record["decision"] = decision.to_dict()
        write_json(OUT, record)
    except TexpressError as exc:
        return fail(str(exc)).exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
