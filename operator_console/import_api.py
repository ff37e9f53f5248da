"""Registry files: import residents or merchants from CSV/XLSX (all or nothing, one unit of
work with one `registry.imported` event: `registry.usecases.run_import`, which the CLI's
`yijing import` uses too) and export them."""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from dispatch.errors import Invalid
from operator_console.api import ADMINS, API, Download, OpenModel, ok, services, user_of
from operator_console.errors import FieldInvalid
from registry import exporting, importing, usecases

#: the largest import file (100,000 surveyed residents take about 10 MB as CSV)
MAX_UPLOAD = 32 * 1024 * 1024


async def read_upload(request: web.Request) -> tuple[str, bytes, bool]:
    """The multipart upload, read as a stream: its file name and bytes, and `dry_run`.

    Streamed so a big survey file (up to MAX_UPLOAD) needs no larger body limit for the
    rest of the API.
    """
    flag = request.query.get("dry_run", "false")
    if not request.content_type.startswith("multipart/"):
        raise Invalid("send the file as multipart field `file`")
    filename, data = "", None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                filename = part.filename or ""
                chunks, size = [], 0
                while chunk := await part.read_chunk(1 << 16):
                    size += len(chunk)
                    if size > MAX_UPLOAD:
                        raise FieldInvalid(
                            f"the file is larger than {MAX_UPLOAD // (1 << 20)} MB; split it",
                            "file",
                        )
                    chunks.append(chunk)
                data = b"".join(chunks)
            elif part.name == "dry_run":
                flag = (await part.text())[:8]
    except Invalid:
        raise
    except (ValueError, HttpProcessingError) as exc:  # a broken multipart body
        raise FieldInvalid("send the file as a multipart form (field `file`)", "file") from exc
    if data is None:
        raise FieldInvalid("send the file as multipart field `file`", "file")
    return filename, data, flag.lower() in ("1", "true", "yes", "on")


class ImportOut(OpenModel):
    """What an import did (or a dry run would do): counts, and the first errors and changes."""

    kind: str
    dry_run: bool
    rows: int
    ok: bool
    committed: bool
    created: int
    updated: int
    unchanged: int
    errors: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    import_id: str | None = None


@API.route(
    "POST",
    "/registry/import/{kind}",
    summary="Import residents or merchants from CSV/XLSX (multipart `file`, `dry_run`)",
    roles=ADMINS,
    tag="registry",
    response=ImportOut,
)
async def import_file(request: web.Request) -> web.Response:
    """All-or-nothing import of one file; 422 with the report when a row is bad.

    The import stops (and writes nothing) when the client goes away: aiohttp does not
    cancel a handler on disconnect, so the import asks between slices of its work.
    """
    from operator_console.errors import error_response

    user = user_of(request)
    kind = request.match_info["kind"]
    if kind not in ("residents", "merchants"):
        raise Invalid("kind must be residents or merchants")
    filename, data, dry_run = await read_upload(request)

    def client_gone() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    try:
        report, import_id = await usecases.run_import(
            services(request).store,
            kind=kind,
            name=filename,
            data=data,
            dry_run=dry_run,
            actor=user.username,
            source="console",
            should_stop=client_gone,
        )
    except importing.Stopped:
        return error_response(400, "import_stopped", "the client went away; nothing was imported")
    if not report.ok:
        return error_response(
            422,
            "import_rejected",
            f"{len(report.errors)} bad rows; nothing was imported",
            report.public(),
        )
    return ok(report.public() | {"import_id": import_id})


@API.route(
    "GET",
    "/registry/export/{kind}",
    summary="Download residents or merchants as ?format=csv|xlsx",
    roles=ADMINS,
    tag="registry",
    response=Download,
)
async def export_file(request: web.Request) -> web.Response:
    """A CSV or XLSX download; ID numbers masked unless ?full_id_numbers=1."""
    user = user_of(request)
    kind = request.match_info["kind"]
    fmt = request.query.get("format", "csv")
    if kind not in ("residents", "merchants") or fmt not in ("csv", "xlsx"):
        raise Invalid("export residents|merchants as format=csv|xlsx")
    async with services(request).store.read() as session:
        if kind == "residents":
            full = request.query.get("full_id_numbers") in ("1", "true")
            data = await exporting.export_residents(
                session, fmt=fmt, user=user, full_id_numbers=full
            )
        else:
            data = await exporting.export_merchants(session, fmt=fmt)
    content_type = (
        "text/csv; charset=utf-8"
        if fmt == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{kind}.{fmt}"',
        },
    )
