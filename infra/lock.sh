#!/usr/bin/env bash
# Refreshes the lock after a change to the dependencies in pyproject.toml: uv.lock (the whole tree,
# exact versions and hashes, Python 3.11 on Linux x86_64) and the two requirement files that the
# installs read (docs/operations.md, "The lock file"):
#   infra/lock/dev.txt      the project with its test extras: infra/local/setup.sh, .ci/run
#   infra/lock/cluster.txt  the container image (Dockerfile): the cluster extras, without torch and
#                           its CUDA libraries, which the image takes from a PyTorch index at the
#                           locked version
# `bash infra/lock.sh --check` changes nothing and fails when pyproject.toml and the lock disagree.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$(command -v uv || echo .venv/bin/uv)}
TORCH_STACK=(torch torchvision triton cuda-bindings cuda-pathfinder cuda-toolkit nvidia-cublas nvidia-cuda-cupti
             nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
             nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-nccl-cu13 nvidia-nvjitlink
             nvidia-nvshmem-cu13 nvidia-nvtx)

export_dev() { "$UV" export --quiet --frozen --no-emit-project --extra test --no-header; }
export_cluster() {
  "$UV" export --quiet --frozen --no-emit-project --extra cluster --no-header \
    $(printf -- '--no-emit-package %s ' "${TORCH_STACK[@]}")
}

if [ "${1:-}" = "--check" ]; then
  "$UV" lock --check --quiet || { echo "lock: uv.lock does not match pyproject.toml; run: bash infra/lock.sh" >&2; exit 1; }
  for f in dev cluster; do
    if ! diff -q <("export_$f") "infra/lock/$f.txt" >/dev/null; then
      echo "lock: infra/lock/$f.txt does not match uv.lock; run: bash infra/lock.sh" >&2
      exit 1
    fi
  done
  echo "lock: uv.lock and infra/lock/*.txt match pyproject.toml"
  exit 0
fi
"$UV" lock --quiet
export_dev > infra/lock/dev.txt
export_cluster > infra/lock/cluster.txt
echo "lock: wrote uv.lock, infra/lock/dev.txt, infra/lock/cluster.txt"
