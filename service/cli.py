"""`crossings serve | db upgrade | segments load PATH`: thin, calls usecases."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from service.domain.errors import ServiceError
from service.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if not settings.is_sqlite:
        from service.storage.postgis.migrations import pending
        from service.storage.postgis.store import make_engine

        engine = make_engine(settings)
        try:
            if pending(engine, settings.database_url):
                print(
                    "the database schema is not current: run `crossings db upgrade` first",
                    file=sys.stderr,
                )
                return 2
        finally:
            engine.dispose()
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    if settings.is_sqlite:
        from service.storage import open_store

        open_store(settings).close()  # SQLite migrates itself on open
        print(f"SQLite store at {settings.database_url} is current")
        return 0
    from service.storage.postgis.migrations import upgrade

    upgrade(settings.database_url)
    print("PostGIS schema is current")
    return 0


def _segments_load(args: argparse.Namespace, settings: Settings) -> int:
    from service.storage import open_store
    from service.usecases.segments import load_segments

    store = open_store(settings)
    try:
        count = load_segments(store, Path(args.path))
    finally:
        store.close()
    print(f"loaded {count} segments from {args.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossings", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(run=_serve)
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(run=_db_upgrade)
    segs = commands.add_parser("segments", help="border segments").add_subparsers(
        dest="segments", required=True
    )
    load = segs.add_parser("load", help="replace the segment set from a GeoJSON file")
    load.add_argument("path")
    load.set_defaults(run=_segments_load)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    try:
        return int(args.run(args, settings))
    except ServiceError as error:
        print(f"crossings: {error.detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
