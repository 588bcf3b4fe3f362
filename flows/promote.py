"""Flow `promote`: run the registry's champion/challenger gate on a candidate model version
(texpress.registry.promote). The winner gets `@champion`, a loser `@challenger`; a dry run only
records the decision. The gate's settings are the `registry:` section of params.yaml."""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field

from flows.common import Text, mlflow_links, model_name, registry_config, report, repo_root, tracking_uri


class PromoteParams(BaseModel):
    """Which version to judge; unset fields come from params.yaml and the registry."""

    model_config = ConfigDict(extra="forbid")
    name: Text | None = Field(None, description="Registered model name (default: registry.name, else texpress-PRESET).")
    version: str | None = Field(None, pattern=r"^[1-9][0-9]*$",
                                description="Candidate version (default: the newest version of the model).")
    dry_run: bool = Field(False, description="Decide and record the decision without moving any alias.")
    max_images: int | None = Field(None, ge=1, description="Evaluate on the first N images of the gate's set only.")


def newest_version(uri: str, name: str) -> str:
    from texpress.registry.store import RegistryError, open_store

    versions = open_store(uri, create=False).client().search_model_versions(f"name = '{name}'")
    if not versions:
        raise RegistryError(f"model {name!r} has no registered version")
    return str(max(int(v.version) for v in versions))


@task(retries=1, retry_delay_seconds=30)  # a promotion that failed half-way changed nothing: safe to retry
def decide(name: str, version: str, dry_run: bool, max_images: int | None) -> dict[str, Any]:
    from texpress.registry.promote import promote as run_gate

    repo = repo_root()
    cfg = registry_config(repo)
    if max_images:
        cfg = dataclasses.replace(cfg, max_images=max_images)
    logger = get_run_logger()
    decision = run_gate(name, version, tracking_uri=tracking_uri(repo), cfg=cfg, dry_run=dry_run,
                       on_error=lambda item, why: logger.warning("%s: %s", item, why))
    for check in decision.checks:
        logger.info("%s %s: %s (limit %s) %s", "pass" if check.passed else "FAIL", check.name, check.value,
                    check.threshold, check.note)
    return decision.to_dict()


@flow(name="promote", log_prints=True)
def promote(params: PromoteParams = PromoteParams()) -> dict[str, Any]:
    """Judge a candidate model version against @champion with the registry's gate; move the aliases."""
    repo = repo_root()
    name = model_name(repo, params.name)
    version = params.version or newest_version(tracking_uri(repo), name)
    d = decide(name, version, params.dry_run, params.max_images)
    rows: dict[str, Any] = {"model": name, "candidate": d["candidate"], "champion before": d["champion"],
                            "promoted": d["promoted"], "dry run": d["dry_run"], "decision": d["note"]}
    for check in d["checks"]:
        rows[f"{check['name']} ({'pass' if check['passed'] else 'fail'})"] = check["value"]
    rows.update({f"@{alias} after": v for alias, v in d["aliases_after"].items()})
    links = mlflow_links(d["run_id"], name, version)
    links["MLflow decision run"] = links.pop("MLflow run", "-")
    report("promote", f"Promotion of {name} version {version}", rows, links)
    return d
