# ingest: streaming large-file ingestion server. Used by docker-compose.yml behind nginx.
# BASE: any Debian-like image with python3 (>= 3.11) and its venv module; the tests build on
# a local minimal Debian image (tests/test_container.py), Docker Hub users get python:3.12-slim.
ARG BASE=python:3.12-slim
FROM ${BASE}

# EXTRAS: the optional backends to install ("s3,postgres" for the scale-out deployment,
# deploy/compose.scale-out.yml); empty = local disk + SQLite only.
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/ingest/bin:$PATH

# libmagic: each file's media type is detected from its first bytes (python-magic). The tests'
# base image has it already; other Debian-like bases install it from their distribution.
RUN ldconfig -p | grep -q 'libmagic\.so\.1' \
 || (apt-get update && apt-get install -y --no-install-recommends libmagic1 && rm -rf /var/lib/apt/lists/*)

# The package is built from the sources and installed into /opt/ingest; then the sources and
# the bytecode venv creation compiled for pip are removed: no compilers, no test tools, no
# build tree, no .pyc (PYTHONDONTWRITEBYTECODE: none written at run time either).
COPY pyproject.toml README.md /tmp/ingest-src/
COPY ingest /tmp/ingest-src/ingest
RUN python3 -m venv /opt/ingest \
 && /opt/ingest/bin/pip install --no-compile "/tmp/ingest-src${EXTRAS:+[$EXTRAS]}" \
 && rm -rf /tmp/ingest-src \
 && find /opt/ingest -name __pycache__ -prune -exec rm -rf {} + \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home ingest \
 && mkdir /data && chown ingest:ingest /data

# A new named volume copies /data from the image, ownership included, so the non-root user can
# write it from the first start.
VOLUME /data
USER ingest
WORKDIR /data

# Every setting is an INGEST_* variable (README, "Settings"); compose overrides these.
ENV INGEST_DATA_DIR=/data \
    INGEST_HOST=0.0.0.0 \
    INGEST_PORT=8000
EXPOSE 8000

# Neither base has curl: the interpreter that runs the app checks it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INGEST_PORT', '8000'), timeout=2)"]

CMD ["ingest", "serve"]
