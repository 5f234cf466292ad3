# syntax=docker/dockerfile:1
# pgsched worker image: `docker build -t ghcr.io/pgsched/pgsched:0.1.0 .`
# The tag is the `version` in pyproject.toml, which is also the Helm chart's
# appVersion (helm/pgsched/Chart.yaml) and so the chart's default image tag.

# ---- build: wheels for pgsched and all its dependencies ----
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pgsched ./pgsched
RUN pip wheel --wheel-dir /wheels .

# ---- runtime ----
FROM python:3.11-slim
ARG PGSCHED_VERSION=0.1.0
LABEL org.opencontainers.image.title="pgsched" \
      org.opencontainers.image.description="Cron schedules, queued jobs and durable workflows on PostgreSQL alone" \
      org.opencontainers.image.version="${PGSCHED_VERSION}" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 pgsched \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin pgsched

# Offline install from the wheels built above; nothing is fetched here.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels pgsched

WORKDIR /app
# Example apps (the default CMD runs the quickstart). Owned by root and
# read-only for the worker: the worker writes nothing to disk.
COPY examples ./examples

USER 10001:10001
# Health server: /healthz, /readyz, /metrics (the chart's worker.healthPort). Outside a
# container it binds 127.0.0.1; here it must answer on the container's address.
ENV PGSCHED_HEALTH_HOST=0.0.0.0
EXPOSE 9108
ENTRYPOINT ["pgsched"]
CMD ["worker", "examples/quickstart.py"]
