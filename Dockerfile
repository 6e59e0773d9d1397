# syntax=docker/dockerfile:1
# The one image recipe of the platform: each of the five services and the patient's web app is
# this file with its own build arguments, which deploy/roles.yaml declares and docker-compose.yml
# passes (its `build:` entries are written by `devstack render`). Every process of an image is
# chosen by the command's first argument (`referrals-<service> <role>`), e.g.
#   referrals-intake api | consumer | relay | migrate | create-client | keygen
# Build from the repository root (the context holds the uv workspace and its lock):
#   docker compose build                       (every image, with the manifest's arguments)
#   docker build --build-arg SERVICE=partners --build-arg SOURCE=services/partners \
#       --build-arg PORTS="8004 9100" --build-arg HEALTHCHECK_URL=http://127.0.0.1:8004/health \
#       -t referrals-partners:0.1.0 .
#   (`devstack render --build-args partners` prints the arguments of one image.)

# Which workspace member to build: its name (package referrals-<SERVICE>, command
# referrals-<SERVICE>) and its directory.
ARG SERVICE=intake
ARG SOURCE=services/intake
# Front-end assets: `none`, or `web` (htmx for the patient's web app).
ARG VENDOR=none

# uv's static binary, at the version the Makefile pins.
FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

# ---- vendor: nothing for a service; the web app's htmx from the pinned npm set the local stack
# uses (deploy/local/node/web), never a CDN ----
FROM scratch AS vendor-none
WORKDIR /out

FROM node:22.21.1-bookworm-slim AS vendor-web
WORKDIR /vendor
COPY deploy/local/node/web/package.json deploy/local/node/web/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && mkdir /out \
 && cp node_modules/htmx.org/dist/htmx.min.js /out/htmx.min.js

FROM vendor-${VENDOR} AS vendor

# ---- builder: a virtual environment with the service and its locked dependencies ----
FROM python:3.11.14-slim-bookworm AS builder
ARG SERVICE
ARG SOURCE
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first, from uv.lock alone: this layer is rebuilt only when the lock
# or a manifest changes, not on every source edit.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/pyproject.toml
COPY ${SOURCE}/pyproject.toml ${SOURCE}/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package referrals-${SERVICE}
# Then the workspace's own packages, installed as wheels (not editable): the runtime image
# needs the virtual environment only, no source tree (templates and translations are in the
# wheels).
COPY libs/common libs/common
COPY ${SOURCE} ${SOURCE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package referrals-${SERVICE}

# ---- runtime: the same Python, the virtual environment, a numeric non-root user ----
FROM python:3.11.14-slim-bookworm AS runtime
ARG SERVICE
ARG DESCRIPTION="A process of the cross-border cancer second-opinion referral platform"
# Debian packages the service needs at run time (translation: Tesseract and its language packs).
ARG SYSTEM_PACKAGES=""
# The ports the image serves (its API's, and the metrics port 9100 of its other processes) and
# what the default health check asks (compose and Kubernetes probe each process themselves).
ARG PORTS="9100"
ARG HEALTHCHECK_URL=http://127.0.0.1:9100/metrics
LABEL org.opencontainers.image.title="referrals-${SERVICE}" \
      org.opencontainers.image.description="${DESCRIPTION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
# tini (process 1) forwards signals and reaps what a killed child leaves behind (OCR processes).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ${SYSTEM_PACKAGES} \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 referrals \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin referrals
# The venv's interpreter links to /usr/local/bin/python3.11, present in this image too.
COPY --from=builder /app/.venv /app/.venv
COPY --from=vendor /out/ /app/vendor/
# One name for the service's command, so that ENTRYPOINT (which takes no build arguments) is the
# same line in every image.
RUN ln -s /app/.venv/bin/referrals-${SERVICE} /usr/local/bin/referrals-service
# MALLOC_ARENA_MAX: glibc's malloc keeps up to 8 arenas a core, one grown by each thread that
# allocates; two are plenty for one service's threads (make up sets the same: under
# bench/pipeline.py's load translation's processes took ~12 MiB less PSS).
ENV PATH=/app/.venv/bin:$PATH \
    MALLOC_ARENA_MAX=2 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REFERRALS_METRICS__HOST=0.0.0.0 \
    REFERRALS_METRICS__PORT=9100 \
    REFERRALS_WEB_VENDOR_DIR=/app/vendor \
    HEALTHCHECK_URL=${HEALTHCHECK_URL}
WORKDIR /app
# Nothing in the image is writable by the service's user: a read-only root file system works
# as long as /tmp is writable (Kubernetes: an emptyDir; Compose: a tmpfs).
USER 10001
EXPOSE ${PORTS}
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--", "referrals-service"]
# No default process: Compose and Kubernetes always name the role (deploy/roles.yaml).
CMD ["--help"]
