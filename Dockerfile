# ingest: streaming large-file ingestion server. Used by docker-compose.yml behind nginx.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libmagic: each file's media type is detected from its first bytes (python-magic).
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/ingest
COPY pyproject.toml README.md ./
COPY ingest ./ingest
RUN pip install . \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home ingest \
 && mkdir /data && chown ingest:ingest /data

# A new named volume copies /data from the image, ownership included, so the non-root user can
# write it from the first start.
VOLUME /data
USER ingest

# Every setting is an INGEST_* variable (README, "Settings"); compose overrides these.
ENV INGEST_DATA_DIR=/data \
    INGEST_HOST=0.0.0.0 \
    INGEST_PORT=8000
EXPOSE 8000

# The slim image has no curl: the interpreter that runs the app checks it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INGEST_PORT', '8000'), timeout=2)"]

CMD ["ingest", "serve"]
