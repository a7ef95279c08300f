# crossings: slim Python, non-root, migrations then the server.
# Embedded SQLite by default (data in the /data volume); set CROSSINGS_DATABASE_URL to
# postgresql+psycopg://user:password@host:5432/db for PostGIS.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CROSSINGS_HOST=0.0.0.0 \
    CROSSINGS_PORT=8000 \
    CROSSINGS_DATABASE_URL=sqlite:////data/crossings.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY alembic ./alembic
COPY data ./data
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin crossings \
    && mkdir /data && chown crossings /data

USER crossings
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["sh", "-c", "crossings db upgrade && exec crossings serve"]
