# syntax=docker/dockerfile:1
# The driftline image: the agent (`driftline run`), the sidecar injector
# (`driftline inject serve`) and the offline tools, one ENTRYPOINT.
#
#   docker build -t registry.example/driftline:0.1.0 .
#   docker push registry.example/driftline:0.1.0
#
# Pin the base by digest for reproducible builds:
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm   # prints the digest
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# -- builder: wheels of driftline and every dependency -------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY detectors ./detectors
COPY monitor ./monitor
COPY alert_rules ./alert_rules
COPY dashboards ./dashboards
RUN pip wheel --wheel-dir /wheels .

# -- runtime: the wheels installed, nothing to build with ----------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="driftline" \
      org.opencontainers.image.description="Streaming drift and data-quality monitoring for ML models" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels driftline \
    && pip uninstall -y pip setuptools wheel \
    && groupadd --gid 65532 driftline \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/driftline \
       --shell /usr/sbin/nologin driftline \
    && install -d -o 65532 -g 65532 /var/lib/driftline /etc/driftline
WORKDIR /var/lib/driftline
USER 65532:65532
# 9108: /metrics, /healthz, /readyz of the agent; 8443: the injector's HTTPS webhook.
EXPOSE 9108 8443
ENTRYPOINT ["driftline"]
CMD ["--help"]
