# crossings on Debian bookworm-slim: a virtualenv of the service on Debian's Python 3.11, run as a
# non-root user; migrations, then the server.
#   docker build -t crossings .
#   docker run -p 8000:8000 -v crossings-data:/data crossings        # embedded SQLite in /data
#   docker run -p 8000:8000 -e CROSSINGS_DATABASE_URL=postgresql+psycopg://user:pw@db:5432/crossings crossings
# scripts/check-container verifies this recipe without a container engine: it builds the same base
# with mmdebstrap, runs every RUN step below in it under chroot, then starts the CMD as the USER
# and stores a report (docs/deployment.md). Keep each RUN step runnable by `sh -c` there.
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/crossings/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CROSSINGS_HOST=0.0.0.0 \
    CROSSINGS_PORT=8000 \
    CROSSINGS_DATABASE_URL=sqlite:////data/crossings.db

# Python from Debian (3.11, as pyproject requires); every other dependency comes as a wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin crossings \
    && mkdir -p /data \
    && chown crossings:crossings /data

WORKDIR /app
COPY pyproject.toml README.md hatch_build.py ./
COPY service ./service
COPY alembic ./alembic
COPY data ./data
# Installing compiles snapping's ranking kernel (hatch_build.py): a C compiler for this step only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && python3 -m venv /opt/crossings \
    && /opt/crossings/bin/pip install . \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && crossings --help > /dev/null \
    && /opt/crossings/bin/python -c "import service.domain.ranking"

USER crossings
VOLUME ["/data"]
EXPOSE 8000
# Liveness: the process answers. Readiness (the store answers) is /readyz, for load balancers.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CROSSINGS_PORT', '8000'), timeout=2)"]
CMD ["sh", "-c", "crossings db upgrade && exec crossings serve"]
