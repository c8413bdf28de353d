# syntax=docker/dockerfile:1
# RTPM: multi-stage build. The builder makes a wheel and installs it with its dependencies into a
# virtualenv; the runtime image copies only that virtualenv and runs as an unprivileged user.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/rtpm
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/rtpm/bin/pip install --upgrade pip wheel \
    && /opt/rtpm/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/rtpm/bin/pip install /wheels/*.whl

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="rtpm" \
      org.opencontainers.image.description="RTPM: self-hosted real-time performance monitoring"
ENV PATH=/opt/rtpm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RTPM_HOST=0.0.0.0 \
    RTPM_PORT=8000 \
    RTPM_DATA_DIR=/data \
    RTPM_LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR=/tmp/rtpm-metrics
RUN groupadd --system --gid 10001 rtpm \
    && useradd --system --uid 10001 --gid rtpm --home-dir /data --shell /usr/sbin/nologin rtpm \
    && mkdir -p /data /tmp/rtpm-metrics \
    && chown rtpm:rtpm /data /tmp/rtpm-metrics
COPY --from=builder /opt/rtpm /opt/rtpm
USER rtpm:rtpm
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# Kubernetes: livenessProbe GET /health/live, readinessProbe GET /health/ready. The check asks the
# port `rtpm serve` listens on: RTPM_PORT (set it, not --port, when changing the port). The worker,
# beat and flower services of docker-compose.yml replace it with their own checks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('RTPM_PORT', '8000'), timeout=4).status != 200)"]
# SIGTERM: stop accepting, finish requests in flight, flush the write buffer, exit (within ~10 s).
STOPSIGNAL SIGTERM
CMD ["rtpm", "serve"]
