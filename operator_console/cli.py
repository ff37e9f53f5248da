"""The `yijing` command: run the service and its admin tasks."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from operator_console.settings import Settings


def _run(settings: Settings) -> int:
    from operator_console.app import create_app

    def announce(password: str) -> None:
        print("=" * 64)
        print("医敬 Yijing demo community seeded.")
        print(f"Console:  {settings.public_url}")
        print(f"Log in as demo / {password}  (admin)")
        print(f"          operator / {password}, supervisor / {password}")
        print("This password is shown once; `yijing user add` makes new logins.")
        print("=" * 64, flush=True)

    app = create_app(settings, announce=announce)
    print(f"Serving on http://{settings.host}:{settings.port} (Ctrl-C to stop)", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


def _db_upgrade(settings: Settings) -> int:
    from operator_console.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print("database is at the latest revision")
    return 0


async def _user_add(
    settings: Settings, username: str, role: str, password: str, merchant_id: int | None
) -> int:
    from operator_console import auth
    from operator_console.migrate import upgrade
    from registry.db import engine_context, make_sessionmaker
    from registry.models import Role, User

    await asyncio.to_thread(upgrade, settings.database_url)
    async with (
        engine_context(settings.database_url) as engine,
        make_sessionmaker(engine)() as session,
    ):
        session.add(
            User(
                username=username,
                display_name=username,
                role=Role(role),
                password_hash=auth.hash_password(password),
                merchant_id=merchant_id,
            )
        )
        await session.commit()
    print(f"user {username} ({role}) added")
    return 0


async def _report(settings: Settings, start: str, end: str, by: str | None, as_csv: bool) -> int:
    from dispatch.figures import load_report, render_table
    from dispatch.service import Invalid
    from operator_console.figures_api import period
    from operator_console.migrate import upgrade
    from registry.db import engine_context, make_sessionmaker

    try:
        lo, hi = period(start, end)
    except Invalid as exc:
        print(exc, file=sys.stderr)
        return 2
    await asyncio.to_thread(upgrade, settings.database_url)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `yijing` console script."""
    parser = argparse.ArgumentParser(prog="yijing", description="医敬 Yijing care dispatch")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the console and API")
    db = sub.add_parser("db", help="database tasks")
    db.add_argument("action", choices=["upgrade"])
    user = sub.add_parser("user", help="console logins")
    user.add_argument("action", choices=["add"])
    user.add_argument("username")
    user.add_argument(
        "--role", choices=["operator", "supervisor", "admin", "merchant"], default="operator"
    )
    user.add_argument("--merchant-id", type=int, default=None)
    user.add_argument("--password", default=None, help="prompted for when omitted")
    report = sub.add_parser("report", help="the community's figures for a period")
    report.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD (included)")
    report.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD (included)")
    report.add_argument("--by", choices=["category", "grid", "merchant", "month"], default=None)
    report.add_argument("--csv", action="store_true", help="CSV instead of a table")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    if args.command == "run":
        return _run(settings)
    if args.command == "report":
        return asyncio.run(_report(settings, args.start, args.end, args.by, args.csv))
    if args.command == "db":
        return _db_upgrade(settings)
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
