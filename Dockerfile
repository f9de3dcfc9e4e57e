# syntax=docker/dockerfile:1
# tierdrift daemon image.
#   docker build -t tierdrift .
#   docker run -d --name tierdrift -v tierdrift-data:/data tierdrift
# With no settings it polls all four sources into SQLite at /data/tierdrift/tierdrift.db. Configure it with
# TIERDRIFT_* variables, or mount a TOML file at /etc/tierdrift/config.toml (read if present).
# PostgreSQL and two replicas: deploy/compose.yaml.

# Builder: wheels for tierdrift and every dependency, so the final stage installs offline.
FROM python:3.11-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY snapshots/ snapshots/
COPY monitor/ monitor/
COPY alerts/ alerts/
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres]"

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    XDG_DATA_HOME=/data \
    TIERDRIFT_CONFIG=/etc/tierdrift/config.toml \
    TIERDRIFT_LOG_FORMAT=json
RUN groupadd --gid 10001 tierdrift \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin tierdrift \
    && mkdir -p /data/tierdrift \
    && chown -R 10001:10001 /data
# Offline from the builder's wheels, so the versions are the ones resolved there (DL3013 is about PyPI).
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "tierdrift[postgres]"
VOLUME /data
WORKDIR /data
USER 10001:10001
# `tierdrift check` fails until every source has had one successful poll: the first polls (Bybit pages
# through ~60 requests) need the start period. On a standby replica it reports the writer's health.
HEALTHCHECK --interval=60s --timeout=30s --start-period=5m --retries=3 CMD ["tierdrift", "check"]
CMD ["tierdrift", "run"]
