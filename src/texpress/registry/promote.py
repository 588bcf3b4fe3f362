"""Champion/challenger promotion: evaluate a candidate version against `@champion`, decide with the
gate, record the decision, move the aliases.

    decision = promote("texpress-lite", "7")          # also: dry_run=True, images=[...], cfg=RegistryConfig(...)
    decision.promoted, decision.checks, decision.run_id

Order of work, so that a failure never leaves a half-done promotion: hold the per-name lock (a
racing promotion waits and then compares against the winner of the first), read the champion,
download both checkpoints and evaluate, decide; then log the decision run (decision.json, metrics,
tags), and only then move the aliases and tag both versions. The winner gets `@champion`, the loser
`@challenger`. A dry run logs the decision (tag promotion.dry_run) and changes no version or alias.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape
from rich.table import Table

from texpress.console import out_console
from texpress.mlstore import ensure_experiment
from texpress.registry.compare import compare
from texpress.registry.config import RegistryConfig
from texpress.registry.gate import Check, judge
from texpress.registry.refs import resolve_checkpoint
from texpress.registry.store import alias_version, get_version, mlflow_errors, name_lock, open_store
from texpress.registry.tags import FINGERPRINT

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class Decision:
    name: str
    candidate: str
    champion: str | None  # the version compared against (None: floors)
    promoted: bool
    dry_run: bool
    checks: list[Check] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    run_id: str | None = None
    decided: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def aliases_after(self) -> dict[str, str | None]:
        """Where the aliases point once the decision is applied (a dry run only says so)."""
        if self.promoted:
            return {CHAMPION: self.candidate, CHALLENGER: self.champion}
        if self.champion == self.candidate:
            return {CHAMPION: self.candidate, CHALLENGER: None}
        return {CHAMPION: self.champion, CHALLENGER: self.candidate}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "candidate": self.candidate, "champion": self.champion,
                "promoted": self.promoted, "dry_run": self.dry_run, "note": self.note, "decided": self.decided,
                "aliases_after": self.aliases_after, "checks": [c.to_dict() for c in self.checks],
                "measurements": self.measurements, "run_id": self.run_id}


def promote(name: str, candidate_version: str | int, *, tracking_uri: str | None = None,
            cfg: RegistryConfig | None = None, images: list[str] | None = None, dry_run: bool = False,
            on_error: Callable[[str, str], None] | None = None) -> Decision:
    """Decide whether version `candidate_version` of `name` becomes `@champion`; see the module docstring."""
    cfg = cfg or RegistryConfig()
    store = open_store(tracking_uri, create=False)
    client = store.client()
    version = str(candidate_version)
    get_version(client, name, version)  # unknown name or version: one line, before any work
    with mlflow_errors(f"promoting {name} version {version}"):
        with name_lock(client, name, cfg.lock_timeout_s):
            decision = _decide(client, store.uri, name, version, cfg, images, dry_run, on_error)
            decision.run_id = _log_decision(client, store, cfg, decision)
            if not dry_run:
                _apply(client, decision)
    return decision


def _decide(client, uri: str, name: str, version: str, cfg: RegistryConfig, images, dry_run: bool,
            on_error) -> Decision:
    champion = alias_version(client, name, CHAMPION)
    if champion == version:
        return Decision(name, version, champion, promoted=False, dry_run=dry_run, note="already @champion")
    cand_path = resolve_checkpoint(f"models:/{name}/{version}", uri)
    champ_path = resolve_checkpoint(f"models:/{name}/{champion}", uri) if champion else None
    cmp = compare(cand_path, champ_path, cfg, images, on_error=on_error)
    checks = judge(cmp, cfg.gate)
    passed = all(c.passed for c in checks)  # no champion and every floor off: the first candidate wins
    against = f"version {champion}" if champion else "the absolute floors (no champion yet)"
    note = f"{'passes' if passed else 'fails'} the gate against {against}"
    measurements = {**cmp.to_dict(), "gate": asdict(cfg.gate),
                    "fingerprints": {"candidate": _fingerprint(client, name, version),
                                     "champion": _fingerprint(client, name, champion) if champion else None}}
    return Decision(name, version, champion, promoted=passed, dry_run=dry_run, checks=checks,
                    measurements=measurements, note=note)


def _fingerprint(client, name: str, version: str) -> str | None:
    return (client.get_model_version(name, version).tags or {}).get(FINGERPRINT)


def _log_decision(client, store, cfg: RegistryConfig, d: Decision) -> str:
    """One run per decision in the registry experiment: tags, a metric per check, decision.json."""
    from mlflow.entities import Metric

    experiment_id = ensure_experiment(store.uri, cfg.experiment, store.artifact_location)
    outcome = "dry-run" if d.dry_run else ("promoted" if d.promoted else "refused")
    run = client.create_run(experiment_id, run_name=f"promote-{d.name}-v{d.candidate}", tags={
        "texpress.kind": "promotion", "promotion.name": d.name, "promotion.candidate": d.candidate,
        "promotion.champion": d.champion or "none", "promotion.promoted": str(d.promoted).lower(),
        "promotion.dry_run": str(d.dry_run).lower(), "promotion.outcome": outcome, "promotion.note": d.note})
    d.run_id = run.info.run_id
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    metrics = [Metric(f"gate/{c.name}", float(c.value), now, 0) for c in d.checks
               if c.value is not None and abs(c.value) != float("inf") and c.value == c.value]
    if metrics:
        client.log_batch(d.run_id, metrics=metrics)
    with tempfile.TemporaryDirectory(prefix="texpress-decision-") as tmp:
        path = Path(tmp) / "decision.json"
        path.write_text(json.dumps(d.to_dict(), indent=2, default=str) + "\n")
        client.log_artifact(d.run_id, str(path))
    client.set_terminated(d.run_id)
    return d.run_id


def _apply(client, d: Decision) -> None:
    """Move the aliases, then tag both versions with the decision (all reads are done by now)."""
    if d.champion == d.candidate:
        return
    after = d.aliases_after
    for alias in (CHAMPION, CHALLENGER):
        if after[alias] is None:
            if alias_version(client, d.name, alias) is not None:
                client.delete_registered_model_alias(d.name, alias)
        else:
            client.set_registered_model_alias(d.name, alias, after[alias])
    tags = {"promotion.run_id": d.run_id or "", "promotion.decided": d.decided}
    _tag(client, d.name, d.candidate, {**tags, "promotion.outcome": CHAMPION if d.promoted else CHALLENGER,
                                       "promotion.against": d.champion or "floors",
                                       **{f"gate.{c.name}": _fmt(c.value) for c in d.checks}})
    if d.champion:
        _tag(client, d.name, d.champion, {**tags, "promotion.outcome": CHALLENGER if d.promoted else CHAMPION,
                                          "promotion.against": d.candidate})


def _tag(client, name: str, version: str, tags: dict[str, str]) -> None:
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def print_decision(d: Decision) -> None:
    """The gate's checks as a table and the verdict (`texpress registry promote`, the DVC register stage)."""
    if d.checks:
        t = Table(title=f"{d.name} v{d.candidate} against "
                        f"{('v' + d.champion) if d.champion else 'the floors'}", title_justify="left")
        for col in ("check", "value", "limit", "result", "how"):
            t.add_column(col, justify="right" if col in ("value", "limit") else "left")
        for c in d.checks:
            t.add_row(c.name, "-" if c.value is None else f"{c.value:+.4g}",
                      "-" if c.threshold is None else f"{c.threshold:g}", "pass" if c.passed else "FAIL",
                      escape(c.note))
        out_console.print(t)
    after = d.aliases_after
    moved = "would set" if d.dry_run else "set"
    aliases = ", ".join(f"@{k} -> v{v}" for k, v in after.items() if v)
    verdict = "promoted" if d.promoted else "not promoted"
    out_console.print(f"{verdict}: {d.note}; {moved} {aliases or 'no alias'} (decision logged in run {d.run_id})",
                      markup=False, soft_wrap=True)
