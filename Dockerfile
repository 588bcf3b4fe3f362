# texpress: one image for the CLI, the Ray head and workers (KubeRay) and the Prefect worker.
#
#   docker build -t texpress:cpu .                                            # CPU torch (default)
#   docker build -t texpress:cu126 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#   docker run --rm -v "$PWD/photos:/data" texpress:cpu compress /data -o /data/coded --model models:/texpress-lite@champion
#
# The entry point is `texpress`; KubeRay and the Prefect worker Deployment set their own command
# (`ray start ...`, `prefect worker start ...`). Details: docs/deploy.md.

ARG PYTHON_VERSION=3.11

# ---- build: a virtual environment with torch from the chosen PyTorch index, then the locked tree
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# the CPU wheels are about 10x smaller than the CUDA ones; any PyTorch index (cu126, cu128, ...) works.
# The versions are uv.lock's (tests/infra/test_lock.py holds them to it).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
WORKDIR /build
COPY pyproject.toml README.md ./
COPY infra/lock/cluster.txt infra/lock/cluster.txt
COPY src ./src
# everything else from the lock (infra/lock/cluster.txt: exact versions and hashes, the cluster extras:
# ray[default] adds the dashboard and job server that KubeRay's probes and RayJobs talk to), then the
# project itself without resolving anything more
RUN pip install --no-cache-dir --require-hashes --no-deps -r infra/lock/cluster.txt \
 && pip install --no-cache-dir --no-deps --no-build-isolation .

# ---- runtime: the environment, the project files, a non-root user
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# git: DVC; wget: KubeRay's health probes; libgomp1: torch's OpenMP threads
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git wget libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/bash texpress
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DVC_NO_ANALYTICS=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    RAY_USAGE_STATS_ENABLED=0
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# the pipeline (dvc.yaml, params.yaml, pipelines/), flows and configuration, for `dvc repro` and Prefect
COPY --chown=texpress:texpress . /app
# numeric, so that Kubernetes can check runAsNonRoot
USER 1000:1000
ENTRYPOINT ["texpress"]
CMD ["--help"]
