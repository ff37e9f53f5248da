"""Spreadsheet files as community offices keep them: CSV (UTF-8 with or without BOM, or
GB18030/GBK) and XLSX, read to rows and written back with formula neutralisation."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

#: a cell that starts with one of these is a formula to a spreadsheet (OWASP CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class BadFile(ValueError):
    """A file that cannot be read as a table at all."""


def detect_format(name: str, data: bytes) -> str:
    """ "xlsx" or "csv", by content first (an XLSX is a zip), then by the file name."""
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    if name.lower().endswith((".xlsx", ".xlsm")):
        raise BadFile("the file is named .xlsx but is not an Excel workbook")
    return "csv"


def decode(data: bytes) -> tuple[str, str]:
    """The text of a CSV file and the encoding found: UTF-8 (BOM or not) or GB18030."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        # GB18030 is a superset of GBK and GB2312: one decoder covers all three
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise BadFile("the file is neither UTF-8 nor GB18030/GBK text") from exc


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # phones and ID numbers typed as numbers in Excel
    if isinstance(value, date | datetime):
        return value.isoformat()[:10]
    return str(value).strip()


def unneutralise(text: str) -> str:
    """Undo our own export's neutralisation, so an exported file re-imports unchanged."""
    if len(text) >= 2 and text[0] == "'" and text[1] in FORMULA_STARTS:
        return text[1:]
    return text


def read_table(name: str, data: bytes) -> tuple[list[str], list[tuple[int, list[str]]], str]:
    """Header, (line number, cells) for each non-empty row, and the encoding or "xlsx"."""
    fmt = detect_format(name, data)
    rows: list[tuple[int, list[str]]] = []
    if fmt == "xlsx":
        import openpyxl

        try:
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a broken zip
            raise BadFile(f"the workbook cannot be opened: {type(exc).__name__}") from exc
        try:
            sheet = book.worksheets[0]
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                rows.append((number, [unneutralise(_cell_text(v)) for v in values]))
        finally:
            book.close()
        encoding = "xlsx"
    else:
        text, encoding = decode(data)
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            for cells in reader:
                rows.append((reader.line_num, [unneutralise(c.strip()) for c in cells]))
        except csv.Error as exc:
            raise BadFile(f"line {reader.line_num}: {exc}") from exc
    rows = [(n, cells) for n, cells in rows if any(cells)]
    if not rows:
        raise BadFile("the file has no header row")
    header = [h.strip().lower() for h in rows[0][1]]
    body = [(n, cells + [""] * (len(header) - len(cells))) for n, cells in rows[1:]]
    return header, body, encoding


def neutralise(value: Any) -> Any:
    """A cell value a spreadsheet will show, never run: formulas get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_table(
    path_or_format: Path | str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> bytes:
    """A CSV (UTF-8 with BOM, which Excel opens correctly) or XLSX file as bytes."""
    fmt = path_or_format if path_or_format in ("csv", "xlsx") else Path(path_or_format).suffix[1:]
    if fmt == "xlsx":
        import openpyxl

        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet()
        sheet.append(list(header))
        for row in rows:
            # every cell as text: openpyxl would store "=..." strings as formulas
            sheet.append([neutralise("" if v is None else str(v)) for v in row])
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([neutralise("" if v is None else str(v)) for v in row])
    return buffer.getvalue().encode("utf-8-sig")
