"""The `yijing` command: run the service and its admin tasks."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from operator_console.settings import Settings


def _run(settings: Settings) -> int:
    from operator_console.app import create_app
    from operator_console.instance import AlreadyRunning
    from operator_console.migrate import SchemaMismatch

    def announce(password: str) -> None:
        print("=" * 64)
        print("医敬 Yijing demo community seeded.")
        print(f"Console:  http://{settings.host}:{settings.port}/")
        print(f"Log in as demo / {password}  (admin)")
        print(f"          operator / {password}, supervisor / {password}")
        print("This password is shown once; `yijing user add` makes new logins.")
        print("=" * 64, flush=True)

    app = create_app(settings, announce=announce)
    print(f"Serving on http://{settings.host}:{settings.port} (Ctrl-C to stop)", flush=True)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    except (AlreadyRunning, SchemaMismatch) as exc:
        print(f"yijing: {exc}", file=sys.stderr)
        return 1
    return 0


def _db_upgrade(settings: Settings) -> int:
    """Migrate to this Yijing's head, saying from which revision to which."""
    from operator_console.migrate import schema_state, upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    before = schema_state(settings.database_url)
    if before.status == "ahead":
        print(f"yijing: {before.message}", file=sys.stderr)
        return 1
    if before.ok:
        print(f"{before.message}: nothing to do")
        return 0
    upgrade(settings.database_url)
    after = schema_state(settings.database_url)
    start = ", ".join(before.current) or "an empty database"
    print(f"database upgraded from {start} to {', '.join(after.current)}")
    return 0 if after.ok else 1


def _db_check(settings: Settings) -> int:
    """Say where the database is; exit 0 only when a process may start on it unmigrated."""
    from operator_console.migrate import schema_state

    state = schema_state(settings.database_url)
    print(state.message, file=sys.stdout if state.ok else sys.stderr)
    return 0 if state.ok else 1


def _schema_refused(settings: Settings) -> int | None:
    """An admin command's schema step, as `yijing run` takes it (YIJING_MIGRATE): None when
    the database is ready, else the exit status after saying why."""
    from operator_console.migrate import SchemaMismatch, prepare

    try:
        prepare(settings.database_url, settings.migrate)
    except SchemaMismatch as exc:
        print(f"yijing: {exc}", file=sys.stderr)
        return 1
    return None


async def _user_add(
    settings: Settings, username: str, role: str, password: str, merchant_id: int | None
) -> int:
    from eventlog.bus import EventBus
    from eventlog.clock import SystemClock
    from eventlog.db import engine_context, make_sessionmaker
    from eventlog.store import Store
    from operator_console import auth
    from registry import repository as repo
    from registry import usecases
    from registry.models import Role

    hashed = await asyncio.to_thread(auth.hash_password, password)
    async with engine_context(settings.database_url) as engine:
        store = Store(make_sessionmaker(engine), EventBus(), SystemClock())
        try:
            await usecases.create_user(
                store,
                username=username,
                display_name=username,
                role=Role(role),
                merchant_id=merchant_id,
                password_hash=hashed,
                actor=f"cli:{getpass.getuser()}",
            )
        except repo.Invalid as exc:
            print(f"user {username} not added: {exc}", file=sys.stderr)
            return 1
    print(f"user {username} ({role}) added")
    return 0


async def _import(settings: Settings, kind: str, path: Path, dry_run: bool) -> int:
    from eventlog.bus import EventBus
    from eventlog.clock import SystemClock
    from eventlog.db import engine_context, make_sessionmaker
    from eventlog.store import Store
    from registry.usecases import run_import

    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    async with engine_context(settings.database_url) as engine:
        store = Store(make_sessionmaker(engine), EventBus(), SystemClock())
        report, import_id = await run_import(
            store,
            kind=kind,
            name=path.name,
            data=data,
            dry_run=dry_run,
            actor=f"cli:{getpass.getuser()}",
            source="cli",
        )
    for line in report.lines():
        print(line)
    if import_id:
        print(f"import id {import_id} (event registry.imported)")
    if not report.ok:
        print(f"{len(report.errors)} bad rows: nothing was imported", file=sys.stderr)
        return 1
    return 0


async def _export(settings: Settings, kind: str, path: Path, full_id_numbers: bool) -> int:
    from eventlog.db import engine_context, make_sessionmaker
    from registry import exporting

    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("csv", "xlsx"):
        print("the file name must end in .csv or .xlsx", file=sys.stderr)
        return 2
    async with (
        engine_context(settings.database_url) as engine,
        make_sessionmaker(engine)() as session,
    ):
        if kind == "residents":
            data = await exporting.export_residents(
                session, fmt=fmt, user=None, full_id_numbers=full_id_numbers
            )
        else:
            data = await exporting.export_merchants(session, fmt=fmt)
        await session.commit()  # the access-log rows of an export
    await asyncio.to_thread(path.write_bytes, data)
    print(f"{kind} exported to {path}")
    return 0


async def _report(settings: Settings, start: str, end: str, by: str | None, as_csv: bool) -> int:
    from dispatch.errors import Invalid
    from dispatch.figures import load_report
    from dispatch.figures_table import render_table
    from eventlog.db import engine_context, make_sessionmaker
    from operator_console.figures_api import period

    try:
        lo, hi = period(start, end)
    except Invalid as exc:
        print(exc, file=sys.stderr)
        return 2
    async with (
        engine_context(settings.database_url) as engine,
        make_sessionmaker(engine)() as session,
    ):
        rep = await load_report(session, start=lo, end=hi, by=by)
    if as_csv:
        sys.stdout.write(rep.csv())
    else:
        print(f"医敬 Yijing figures {start} .. {end}")
        print(render_table(rep))
    return 0


def _asterisk_conf(settings: Settings, args: argparse.Namespace) -> int:
    """Write the dialplan, AMI, hold-music and RTP files and link the prompt build."""
    from operator_console.settings import is_placeholder
    from providers.asterisk.install import INCLUDES, InstallOptions, install

    if is_placeholder(settings.asterisk_secret):
        print("yijing: set YIJING_ASTERISK_SECRET to a real secret first", file=sys.stderr)
        return 2
    options = InstallOptions(
        ami_secret=settings.asterisk_secret,
        ami_username=settings.asterisk_username,
        ami_port=settings.asterisk_port,
        agi_host=settings.asterisk_agi_host,
        agi_port=settings.asterisk_agi_port,
        hotline_cid=settings.hotline_number,
        operator_tech=args.operator_tech,
        dialout_tech=args.dialout_tech,
        trunk=args.trunk,
    )
    prompts = Path(settings.asterisk_sounds_dir or settings.prompts_dir)
    try:
        written = install(
            options, etc_dir=args.etc_dir, sounds_dir=args.sounds, prompts_dir=prompts
        )
    except (OSError, ValueError) as exc:
        print(f"yijing: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    for name, line in INCLUDES.items():
        print(f"add to {args.etc_dir / name}: {line}")
    if not (prompts / "manifest.json").exists():
        print(f"{prompts} has no prompt build yet: run `yijing prompts build`")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `yijing` console script."""
    parser = argparse.ArgumentParser(prog="yijing", description="医敬 Yijing care dispatch")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the console and API")
    db = sub.add_parser("db", help="database tasks")
    db.add_argument("action", choices=["upgrade", "check"])
    user = sub.add_parser("user", help="console logins")
    user.add_argument("action", choices=["add"])
    user.add_argument("username")
    user.add_argument(
        "--role", choices=["operator", "supervisor", "admin", "merchant"], default="operator"
    )
    user.add_argument("--merchant-id", type=int, default=None)
    user.add_argument("--password", default=None, help="prompted for when omitted")
    sub.add_parser("ami-decode", help="print the call events in a raw AMI capture", add_help=False)
    conf = sub.add_parser(
        "asterisk-conf", help="write Yijing's Asterisk configuration (INSTALL.md) from YIJING_*"
    )
    conf.add_argument("etc_dir", type=Path, help="Asterisk's configuration folder")
    conf.add_argument(
        "--sounds", type=Path, default=Path("/var/lib/asterisk/sounds"), help="Asterisk's sounds"
    )
    conf.add_argument("--operator-tech", default="PJSIP", help="operators' endpoints: PJSIP or SIP")
    conf.add_argument("--dialout-tech", default="PJSIP", help="the trunk's technology")
    conf.add_argument("--trunk", default="trunk", help="the carrier endpoint (or peer) name")
    prompts = sub.add_parser("prompts", help="IVR prompt audio")
    prompts.add_argument("action", choices=["build"])
    prompts.add_argument("--out", default=None, help="output folder (YIJING_PROMPTS_DIR)")
    prompts.add_argument("--recorded", default=None, help="recorded prompts that override")
    flows = sub.add_parser("flows", help="IVR flows")
    flows.add_argument("action", choices=["check"])
    flows.add_argument("folder")
    imp = sub.add_parser("import", help="import residents or merchants from CSV/XLSX")
    imp.add_argument("kind", choices=["residents", "merchants"])
    imp.add_argument("file", type=Path)
    imp.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    exp = sub.add_parser("export", help="export residents or merchants to CSV/XLSX")
    exp.add_argument("kind", choices=["residents", "merchants"])
    exp.add_argument("file", type=Path, help="a .csv or .xlsx path")
    exp.add_argument(
        "--full-id-numbers", action="store_true", help="write ID numbers unmasked (residents)"
    )
    report = sub.add_parser("report", help="the community's figures for a period")
    report.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD (included)")
    report.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD (included)")
    report.add_argument(
        "--by", choices=["day", "category", "grid", "merchant", "month"], default=None
    )
    report.add_argument("--csv", action="store_true", help="CSV instead of a table")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ami-decode"]:
        from providers.asterisk.decode import main as ami_decode

        return ami_decode(argv[1:])
    args = parser.parse_args(argv)

    from operator_console.logsafe import configure

    # one record, one line: nothing a request sends can start a line of its own
    configure(logging.INFO)
    try:
        settings = Settings.from_environment()
    except ValueError as exc:
        print(f"yijing: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        return _run(settings)
    if args.command == "db":
        from sqlalchemy.exc import OperationalError

        try:
            return _db_upgrade(settings) if args.action == "upgrade" else _db_check(settings)
        except OperationalError as exc:
            print(f"yijing: cannot reach the database: {exc.orig or exc}", file=sys.stderr)
            return 1
    if args.command in ("user", "import", "export", "report"):
        refused = _schema_refused(settings)
        if refused is not None:
            return refused
    if args.command == "asterisk-conf":
        return _asterisk_conf(settings, args)
    if args.command == "prompts":
        from ivr.audio import build_prompts

        out = Path(args.out) if args.out else settings.prompts_dir
        recorded = args.recorded or settings.recorded_prompts_dir
        built = build_prompts(out, recorded_dir=Path(recorded) if recorded else None)
        print(built.summary())
        return 0 if built.ok else 1
    if args.command == "flows":
        from ivr.library import check_folder

        problems = check_folder(Path(args.folder))
        for problem in problems:
            print(problem, file=sys.stderr)
        print("flows are valid" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    if args.command == "import":
        return asyncio.run(_import(settings, args.kind, args.file, args.dry_run))
    if args.command == "export":
        return asyncio.run(_export(settings, args.kind, args.file, args.full_id_numbers))
    if args.command == "report":
        return asyncio.run(_report(settings, args.start, args.end, args.by, args.csv))
    if args.command == "user":
        password = args.password or getpass.getpass("password: ")
        if len(password) < 8:
            print("password must have at least 8 characters", file=sys.stderr)
            return 2
        return asyncio.run(
            _user_add(settings, args.username, args.role, password, args.merchant_id)
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
