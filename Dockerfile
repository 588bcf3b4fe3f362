# texpress: one image for the CLI, the Ray head and workers (KubeRay) and the Prefect worker.
#
#   docker build -t texpress:cpu .                                            # CPU torch (default)
#   docker build -t texpress:cu126 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#   docker run --rm -v "$PWD/photos:/data" texpress:cpu compress /data -o /data/coded --model models:/texpress-lite@champion
#
# The entry point is `texpress`; KubeRay and the Prefect worker Deployment set their own command
# (`ray start ...`, `prefect worker start ...`). Details: docs/deploy.md.

ARG PYTHON_VERSION=3.11

# ---- build: a virtual environment with torch from the chosen PyTorch index, then the project
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# the CPU wheels are about 10x smaller than the CUDA ones; any PyTorch index (cu126, cu128, ...) works
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3013
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" torch torchvision
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# ray[default] adds the dashboard and job server that KubeRay's probes and RayJobs talk to;
# versions come from pyproject.toml
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[cluster]"

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
