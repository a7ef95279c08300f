"""`crossings serve | fold | worker | db upgrade | db rebuild-rollups | segments load PATH |
links estimate | export | import PATH | purge`: thin, calls usecases."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from service.domain.errors import ServiceError, StoreUnavailable
from service.settings import Settings

if TYPE_CHECKING:
    from service.domain.access import Caller
    from service.progress import Progress
    from service.storage.base import Store
    from service.supervise import StopRequest, Supervised


@contextlib.contextmanager
def _opened(settings: Settings) -> Iterator[Store]:
    """The store the settings name, closed when done."""
    from service.storage import open_store

    store = open_store(settings.store_options)
    try:
        yield store
    finally:
        store.close()


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run uvicorn. Exits at once only on what waiting cannot fix: a database URL that names no
    usable driver, a SQLite file that cannot be opened, a PostGIS schema found behind this code.
    A database that cannot be reached is waited for, by the server itself (/healthz answers)."""
    import shutil
    import tempfile

    problem = _check_store(settings)
    if problem is not None:
        print(f"crossings serve: {problem}", file=sys.stderr)
        return 2
    from service.supervise import HeldSignals, StopSignal

    workers = args.workers or settings.workers
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics there; /metrics in any worker sums them all.
        metrics_dir = tempfile.mkdtemp(prefix="crossings-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    import uvicorn

    from service.logs import log_config

    if args.host:  # the bind host is one of the allowed Host names (service/app.py)
        os.environ["CROSSINGS_HOST"] = args.host
    folder = _folder_process(settings)
    if folder is not None:  # its workers fold nothing: the child does, one per `crossings serve`
        os.environ["CROSSINGS_ROLLUP_FOLDER"] = "off"
    # Once, here, before any worker starts: a new release's bundled border replaces the one an
    # earlier release bundled (never a border the operator loaded). A database not reachable now
    # is the server's to wait for; `crossings db upgrade` (the container runs it) does it then.
    try:
        _upgrade_bundled_border(settings)
    except StoreUnavailable as error:
        logging.getLogger("crossings").warning("bundled border not checked: %s", error.detail)
    # With a fold child, a stop signal must reach the `finally` below (which stops the child)
    # whenever it comes: before uvicorn has its handlers, or raised again by uvicorn (one worker)
    # when it has drained; held, each lands as a StopSignal.
    held = HeldSignals() if folder is not None else None
    stopped_by: int | None = None
    try:
        if folder is not None:
            folder.start()
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=workers,
            log_level=settings.log_level,
            log_config=log_config(settings),
            access_log=False,  # service/api/observe.py writes one line per request
            # The app decides whose X-Forwarded-For to believe (CROSSINGS_TRUSTED_PROXIES):
            # uvicorn's default believes any request from 127.0.0.1.
            proxy_headers=False,
            timeout_graceful_shutdown=10,
        )
    except StopSignal as stop:
        stopped_by = stop.signum
    finally:
        if folder is not None and held is not None:
            held.arm()  # uvicorn's workers leave handlers of their own: a second signal is ours
            try:  # after the drain: what was acknowledged until then is folded
                folder.stop()
            except StopSignal as again:  # a second signal: at once
                stopped_by = stopped_by or again.signum
                folder.kill()
            held.release()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if held is not None and stopped_by is not None:
        held.end_as(stopped_by)
    return 0


# How long `crossings serve` waits for its folder child to finish a fold under way when it stops
# (then kills it: the fold's transaction is lost, its reports stay pending, nothing is wrong).
FOLDER_STOP_WAIT_S = 20.0


def _folder_process(settings: Settings) -> Supervised | None:
    """The supervised `crossings fold` child a server runs with CROSSINGS_ROLLUP_FOLDER=process
    (PostGIS, folding on), or None."""
    if settings.rollup_folder != "process" or not settings.folds:
        return None
    from service.supervise import Supervised

    argv = [sys.executable, "-m", "service.cli", "fold", "--parent", str(os.getpid())]
    return Supervised(argv, name="rollup folder process", stop_wait_s=FOLDER_STOP_WAIT_S)


def _fold(args: argparse.Namespace, settings: Settings) -> int:
    """Fold pending reports into the rollups (surge detection and linking with each fold) until
    SIGTERM or SIGINT; a fold under way finishes first. Waits for the database as a server does.
    Any number may run at once: one folds at a time (an advisory lock), the others skip."""
    import signal

    from service.storage.postgis.store import PostgisStore
    from service.supervise import StopRequest

    if settings.is_sqlite:
        print(
            "crossings fold: the SQLite store has no rollup folder (its ingest counts each "
            "report in the request's own transaction); nothing to run",
            file=sys.stderr,
        )
        return 2
    if settings.rollup_fold_interval_ms == 0:
        print(
            "crossings fold: CROSSINGS_ROLLUP_FOLD_INTERVAL_MS=0 turns folding off", file=sys.stderr
        )
        return 2
    # The folds run in the folder's thread; this one only notes a stop and waits for it.
    stop = StopRequest()
    problem = _check_store(settings)
    if problem is not None:
        print(f"crossings fold: {problem}", file=sys.stderr)
        return 2
    log = logging.getLogger("crossings")
    store = _wait_for_store(settings, stop, args.parent)
    if store is None:
        return 0
    try:
        if not isinstance(store, PostgisStore):
            return 2  # not reached: settings.folds, so the URL is PostGIS's
        store.start_folder()
        log.info(
            "rollup folder started: every %d ms, up to %d reports a fold",
            settings.rollup_fold_interval_ms,
            settings.rollup_fold_batch,
        )
        while (why := stop.wait(3600.0, args.parent)) is None:
            pass
        log.info(
            "%s: stopping the rollup folder (a fold under way finishes first; a second SIGTERM "
            "or SIGINT stops at once, leaving that fold's reports pending)",
            why,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
    finally:
        store.close()
    log.info("rollup folder stopped")
    return 0


def _wait_for_store(settings: Settings, stop: StopRequest, parent: int | None) -> Store | None:
    """The store once it answers with a current schema, retried as a server does (pauses
    doubling from 0.25 s to CROSSINGS_DB_RETRY_MAX_S); None if stopped while waiting."""
    from service.api.lifecycle import FIRST_RETRY_S
    from service.storage import check_ready, open_store

    delay = FIRST_RETRY_S
    while True:
        store = None
        try:
            store = open_store(settings.store_options)
            check_ready(store, settings.store_options)
            return store
        except StoreUnavailable as error:
            if store is not None:
                store.close()
            logging.getLogger("crossings").warning(
                "waiting for the database: %s (next try in %.2f s)", error.detail, delay
            )
        if (why := stop.wait(delay, parent)) is not None:
            logging.getLogger("crossings").info("%s while waiting for the database: stopped", why)
            return None
        delay = min(delay * 2, settings.db_retry_max_s)


def _check_store(settings: Settings) -> str | None:
    """What makes starting pointless, or None. Only a database that answers can be checked for
    its schema; one that does not is the server's to wait for."""
    from sqlalchemy import exc

    from service.domain.errors import SchemaNotCurrent, StoreUnavailable
    from service.storage import check_ready, open_store

    try:
        store = open_store(settings.store_options)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
        return (
            "CROSSINGS_DATABASE_URL is not a database URL this service can use (sqlite:///PATH "
            f"or postgresql+psycopg://USER@HOST/DB): {type(error).__name__}: {error}"
        )
    except StoreUnavailable as error:
        if settings.is_sqlite:
            return f"cannot open the SQLite store: {error.detail}"
        return None
    try:
        check_ready(store, settings.store_options)
    except SchemaNotCurrent as error:
        return error.detail
    except StoreUnavailable as error:
        logging.getLogger("crossings").warning(
            "the database does not answer yet (%s): starting, and waiting for it",
            error.detail,
        )
    finally:
        store.close()
    return None


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    if settings.is_sqlite:
        from service.storage import open_store

        open_store(settings.store_options).close()  # SQLite migrates itself on open
        print(f"SQLite store at {settings.database_url} is current")
    else:
        from service.storage.postgis.migrations import upgrade

        upgrade(settings.database_url)
        print("PostGIS schema is current")
    _upgrade_bundled_border(settings)
    return 0


def _upgrade_bundled_border(settings: Settings) -> None:
    """Replace an earlier release's bundled border with this release's, re-snapping every
    stored report (docs/border-data.md); say what was done."""
    from service.progress import Progress
    from service.usecases.access import record
    from service.usecases.segments import BorderUpgrade, upgrade_bundled_border

    if not settings.upgrade_bundled_border:
        return
    progress = Progress("re-snapping reports to the new bundled border")
    with _opened(settings) as store:
        result = upgrade_bundled_border(
            store,
            max_distance_m=settings.max_snap_distance_m,
            on_progress=lambda done, total: _tick(progress, done, total),
        )
        if result.outcome is BorderUpgrade.UPGRADED:
            record(store, _cli_admin(), "segments.upgrade",
                   {"replaced": result.previous, "segments": result.segments,
                    "resnapped": result.resnapped})  # fmt: skip
    if progress.done:
        progress.finish()
    if result.outcome is BorderUpgrade.UPGRADED:
        print(
            f"border: the bundled border of an earlier release ({result.previous}) was replaced "
            f"by this release's ({result.segments} segments); {result.resnapped:,} stored "
            "reports re-snapped to it and the rollups recounted"
        )
    elif result.outcome is BorderUpgrade.KEPT:
        print(
            f"border: the stored border ({result.segments} segments) is not one an earlier "
            "release bundled; kept as it is (`crossings segments load PATH` replaces it)"
        )


def _db_rebuild_rollups(args: argparse.Namespace, settings: Settings) -> int:
    # A recount of every report is no API request: the API's statement timeout (30 s) cancelled it
    # at a million reports on a busy machine, reported as "the database is not reachable".
    with _opened(settings.model_copy(update={"db_statement_timeout_ms": 0})) as store:
        store.rebuild_rollups()
    print("rollups rebuilt from the stored reports")
    return 0


def _segments_load(args: argparse.Namespace, settings: Settings) -> int:
    from service.progress import Progress
    from service.usecases.access import record
    from service.usecases.segments import load_segments

    progress = Progress("re-snapping reports")
    with _opened(settings) as store:
        index = load_segments(
            store,
            Path(args.path),
            max_distance_m=settings.max_snap_distance_m,
            on_progress=lambda done, total: _tick(progress, done, total),
        )
        record(store, _cli_admin(), "segments.load",
               {"path": str(args.path), "segments": len(index), "resnapped": progress.done})  # fmt: skip
    if progress.done:
        progress.finish()
    print(
        f"loaded {len(index)} segments from {args.path}; {progress.done:,} stored reports "
        "re-snapped to them and the rollups recounted. Restart running servers: they keep the "
        "border they started with."
    )
    return 0


def _release_cut(args: argparse.Namespace, settings: Settings) -> int:
    from service.usecases.release import cut_release

    with _opened(settings) as store:
        info = cut_release(store, now=datetime.now(UTC), delay_h=settings.public_delay_h)
    print(f"public release {info.release_id} cut: the days before {info.through} (UTC)")
    return 0


def _sample_size(text: str) -> int:
    """--sample's value: the bounds of CROSSINGS_LINK_U_SAMPLE_PAIRS."""
    field = Settings.model_fields["link_u_sample_pairs"]
    low, high = (next(m for m in field.metadata if hasattr(m, a)) for a in ("ge", "le"))
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not low.ge <= size <= high.le:
        raise argparse.ArgumentTypeError(f"must be between {low.ge:,} and {high.le:,}")
    return size


def _links_estimate(args: argparse.Namespace, settings: Settings) -> int:
    """Estimate linking's u and crowding from the stored reports now, and rescore the proposed
    links (servers also do, every CROSSINGS_LINK_ESTIMATE_EVERY_H)."""
    from service.domain.link_model import MIN_U_PAIRS
    from service.progress import Progress
    from service.usecases.link_model import estimate_link_model, rescore_links

    size = args.sample or settings.link_u_sample_pairs
    with _opened(settings.model_copy(update={"db_statement_timeout_ms": 0})) as store:
        found = estimate_link_model(store, sample_size=size, now=datetime.now(UTC), seed=args.seed)
        sample, model = found.sample, found.model
        print(
            f"sampled {len(sample.reports):,} reports (up to {size:,}), each looked for whole "
            f"days away: {sample.pairs:,} unrelated candidate pairs"
        )
        if model is None:
            print(f"fewer than {MIN_U_PAIRS:,} pairs: u and the crowding stay the defaults")
            return 0
        busiest = sorted(model.crowding.items(), key=lambda kv: -kv[1])[:5]
        print(
            f"stored estimate {model.version} (border version {model.border_version}); crowding "
            f"on {len(model.crowding):,} segments, the busiest: "
            + ", ".join(f"{segment} {c:.1f}" for segment, c in busiest)
        )
        if args.no_rescore:
            return 0
        progress = Progress("proposed links rescored")
        rescored = rescore_links(store, on_batch=progress.update)
        if rescored:
            progress.finish()
    print(f"{rescored:,} proposed links rescored under estimate {model.version}")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """Send webhook deliveries until SIGTERM or SIGINT (any number of workers may run, beside
    the servers' own)."""
    import signal
    import threading

    from service.storage import open_store
    from service.usecases.deliver_webhooks import DeliveryWorker

    store = open_store(settings.store_options)
    worker = DeliveryWorker(store, settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    logging.getLogger("crossings").info("webhook worker started")
    try:
        worker.run(stop)
    finally:
        worker.close()
        store.close()
    return 0


@contextlib.contextmanager
def _output(name: str) -> Iterator[IO[bytes]]:
    """Standard output for "-", else the file of that name (closed when done)."""
    if name == "-":
        yield sys.stdout.buffer
        return
    with open(name, "wb") as out:
        yield out


def _tick(progress: Progress, done: int, total: int) -> None:
    progress.total = total
    progress.update(done)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from service.api.schemas.pages import parse_time
    from service.api.schemas.reports import feature_line
    from service.domain.queries import ReportQuery
    from service.progress import Progress
    from service.usecases.access import record
    from service.usecases.transfer import export_reports

    query = ReportQuery(start=parse_time("start", args.start), end=parse_time("end", args.end))
    progress = Progress("exported")
    count = 0
    with _opened(settings) as store, _output(args.output) as out:
        for count, report in enumerate(export_reports(store, query), start=1):
            out.write(feature_line(report))
            progress.update(count)
        record(store, _cli_admin(), "reports.export",
               {"start": args.start, "end": args.end, "reports": count})  # fmt: skip
    progress.update(count)
    progress.finish()
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from service.api.schemas.reports import reports_from_lines
    from service.domain.reports import Report
    from service.progress import Progress
    from service.usecases.segments import ensure_segments
    from service.usecases.transfer import import_reports

    path = None if args.path == "-" else Path(args.path)
    total = None
    if path is not None:
        with path.open("rb") as counting:
            total = sum(1 for line in counting if line.strip())
    now = datetime.now(UTC)
    refused: list[str] = []

    def reports() -> Iterator[Report]:
        source = sys.stdin.buffer if path is None else path.open("rb")
        try:
            yield from reports_from_lines(source, received_at_fallback=now, refused=refused)
        finally:
            if source is not sys.stdin.buffer:
                source.close()

    progress = Progress("imported", total=total)
    with _opened(settings) as store:
        index = ensure_segments(store, settings.segments_path)
        counts = import_reports(
            store,
            index,
            reports(),
            max_distance_m=settings.max_snap_distance_m,
            progress=lambda c: progress.update(sum(c.values()) + len(refused)),
        )
    progress.update(sum(counts.values()) + len(refused))
    progress.finish()
    counts["invalid"] += len(refused)
    print(", ".join(f"{counts[k]} {k}" for k in ("created", "duplicate", "conflict", "invalid")))
    for line in refused[:20]:
        print(f"refused {line}", file=sys.stderr)
    if counts["conflict"]:
        print(
            "conflicts: those ids are stored with other content; the stored reports were kept",
            file=sys.stderr,
        )
    return 1 if refused or counts["conflict"] else 0


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    """Run it daily to keep precise fields no longer than the retention period, e.g. from cron:
    ``17 3 * * * crossings purge`` (with CROSSINGS_PRECISE_RETENTION_DAYS set)."""
    from datetime import timedelta

    days = args.older_than_days or settings.precise_retention_days
    if days is None:
        print(
            "crossings purge: how old must a report be? Give --older-than-days N or set "
            "CROSSINGS_PRECISE_RETENTION_DAYS",
            file=sys.stderr,
        )
        return 2
    before = datetime.now(UTC) - timedelta(days=days)
    with _opened(settings) as store:
        purged = store.purge_precise(before)
    print(
        f"purged {purged:,} reports observed before {before:%Y-%m-%dT%H:%M:%SZ}: their position "
        "is now their grid cell's centre, their notes, device, accuracy and snapped point are gone"
    )
    return 0


def _days(text: str) -> int:
    days = int(text)
    if days < 1:
        raise argparse.ArgumentTypeError("must be a whole number of days, 1 or more")
    return days


def _cli_admin() -> Caller:
    """Who acts from the command line: the operator of the machine, an admin without a key."""
    from service.domain.access import Caller, Role

    return Caller(role=Role.ADMIN, key_name="command line")


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from service.usecases.access import create_key

    expires = None
    if args.expires:
        expires = datetime.fromisoformat(args.expires)  # a date means its midnight
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    with _opened(settings) as store:
        key, token = create_key(
            store, role=args.role, name=args.name, expires_at=expires, actor=_cli_admin()
        )
    print(token)
    print(
        f"key {key.key_id} ({key.role.value}, {key.name!r}) made; this is the only time it is "
        "shown: only its digest is stored",
        file=sys.stderr,
    )
    return 0


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    with _opened(settings) as store:
        keys = store.list_keys()
    print(f"{'key_id':14} {'role':9} {'created':26} {'expires':26} {'revoked':26} name")
    for k in keys:
        cells = [k.created_at, k.expires_at, k.revoked_at]
        when = [("-" if c is None else c.isoformat(timespec="seconds")).ljust(26) for c in cells]
        print(f"{k.key_id:14} {k.role.value:9} {' '.join(when)} {k.name}")
    return 0


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from service.usecases.access import revoke_key

    with _opened(settings) as store:
        revoke_key(store, args.key_id, actor=_cli_admin())
    print(f"key {args.key_id} revoked")
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from service.api.schemas.pages import parse_time

    with _opened(settings) as store:
        entries = store.list_audit(parse_time("since", args.since), args.limit)
    for e in entries:
        who = e.key_id or "-"
        detail = orjson.dumps(e.detail).decode()
        print(f"{e.at.isoformat(timespec='seconds')} {who:12} {e.role.value:8} {e.action} {detail}")
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
    db.add_parser(
        "rebuild-rollups", help="recount the tile rollups from the reports (after a bulk load)"
    ).set_defaults(run=_db_rebuild_rollups)
    segs = commands.add_parser("segments", help="border segments").add_subparsers(
        dest="segments", required=True
    )
    load = segs.add_parser("load", help="replace the segment set from a GeoJSON file")
    load.add_argument("path")
    load.set_defaults(run=_segments_load)
    release = commands.add_parser("release", help="the public release").add_subparsers(
        dest="release", required=True
    )
    release.add_parser(
        "cut", help="cut the public release now (servers also cut it every few minutes)"
    ).set_defaults(run=_release_cut)
    links = commands.add_parser("links", help="linking reports of one crossing").add_subparsers(
        dest="links", required=True
    )
    estimate = links.add_parser(
        "estimate",
        help="estimate u and the crowding from the stored reports and rescore the proposed links",
        description="Draws random stored reports, looks for each one's candidates as if it had "
        "been observed whole days earlier or later (pairs that cannot be one group), estimates u "
        "and each segment's crowding from them, stores them as the next version and rescores the "
        "proposed links under it (reviewed links keep their weights). Servers do the same every "
        "CROSSINGS_LINK_ESTIMATE_EVERY_H hours.",
    )
    estimate.add_argument(
        "--sample",
        type=_sample_size,
        help="reports to draw, 100 to 200,000 (default: CROSSINGS_LINK_U_SAMPLE_PAIRS)",
    )
    estimate.add_argument("--seed", type=int, help="the draw's seed (default: a random one)")
    estimate.add_argument(
        "--no-rescore", action="store_true", help="store the estimate, leave the links as they are"
    )
    estimate.set_defaults(run=_links_estimate)
    fold = commands.add_parser(
        "fold",
        help="fold pending reports into the rollups, detect surges and link reports (PostGIS), "
        "until SIGTERM (servers also do, unless CROSSINGS_ROLLUP_FOLDER=off)",
    )
    # Given by `crossings serve` to its child: stop when that process is gone.
    fold.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    fold.set_defaults(run=_fold)
    commands.add_parser(
        "worker",
        help="send webhook deliveries (servers also do, unless CROSSINGS_WEBHOOK_WORKER=0)",
    ).set_defaults(run=_worker)
    export = commands.add_parser("export", help="write reports as newline-delimited GeoJSON")
    export.add_argument("-o", "--output", default="-", help="file (default: standard output)")
    export.add_argument("--start", help="only observed_at >= START (RFC 3339)")
    export.add_argument("--end", help="only observed_at < END (RFC 3339)")
    export.set_defaults(run=_export)
    imp = commands.add_parser("import", help="store reports from an export, exactly once by id")
    imp.add_argument("path", help="newline-delimited GeoJSON from `crossings export` (- for stdin)")
    imp.set_defaults(run=_import)
    purge = commands.add_parser(
        "purge",
        help="coarsen older reports to their ~1 km grid cell and drop their notes and device",
        description="Reports observed more than N days ago keep their segment, side, period, "
        "kind, direction and people (so aggregates and low-zoom tiles do not change); their "
        "position becomes the centre of their level-15 grid cell, and their notes, device_id, "
        "accuracy and snapped point are dropped. Reports already purged are left alone.",
    )
    purge.add_argument(
        "--older-than-days",
        type=_days,
        metavar="N",
        help="purge reports observed more than N days ago (default: "
        "CROSSINGS_PRECISE_RETENTION_DAYS)",
    )
    purge.set_defaults(run=_purge)
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys", required=True)
    create = keys.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--role", required=True, choices=["reporter", "analyst", "admin"])
    create.add_argument("--name", required=True, help="who or what holds it, e.g. 'field app'")
    create.add_argument("--expires", help="a date or RFC 3339 instant (UTC unless an offset)")
    create.set_defaults(run=_keys_create)
    keys.add_parser("list", help="every key, never a secret").set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_keys_revoke)
    audit = commands.add_parser("audit", help="print the audit log, oldest first")
    audit.add_argument("--since", help="from this instant (RFC 3339)")
    audit.add_argument("--limit", type=int, default=1000)
    audit.set_defaults(run=_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging.config

    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print("crossings: the configuration is not valid:", file=sys.stderr)
        for e in error.errors():
            name = "CROSSINGS_" + "_".join(str(p) for p in e["loc"]).upper()
            print(f"  {name}: {e['msg']}", file=sys.stderr)
        return 2
    from service.logs import log_config

    logging.config.dictConfig(log_config(settings))
    try:
        return int(args.run(args, settings))
    except ServiceError as error:
        print(f"crossings: {error.detail}", file=sys.stderr)
        for field_error in error.errors:
            print(f"  {field_error.field}: {field_error.reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
