"""A resident's medication and appointment reminders on the API (`dispatch.reminders`):
operators, supervisors and admins read, add, change and remove them; merchants never.

Importing this module registers its routes on `operator_console.api.API`; the app
factory imports it once.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Literal

from aiohttp import web
from pydantic import Field, model_validator

from dispatch.models import Reminder
from dispatch.reminders import Reminders, parse_time
from operator_console.api import (
    API,
    OPERATORS,
    Done,
    Model,
    Strict,
    body,
    int_param,
    ok,
    services,
    user_of,
)

REGISTERED = True


def _days_ok(days: list[int] | None) -> None:
    if days is None:
        return
    if any(not 1 <= d <= 7 for d in days):
        raise ValueError("days must be ISO weekdays 1 (Monday) to 7 (Sunday)")
    if len(set(days)) != len(days):
        raise ValueError("days must not repeat a weekday")


class ReminderBody(Strict):
    """A new reminder: medication (at a time on weekdays) or an appointment (one date)."""

    kind: Literal["medication", "appointment"]
    #: what the voice reads
    text: str = Field(min_length=1, max_length=200)
    #: local time of day (HH:MM): the medication's, or the appointment's
    at: time
    #: ISO weekdays of a medication reminder (1 Monday .. 7 Sunday); none for an appointment
    days: list[int] = Field(default_factory=list, max_length=7)
    #: the appointment's local date; none for medication
    on_date: date | None = None
    enabled: bool = True
    #: the call's language; none: the resident's own
    language: Literal["zh-CN", "en"] | None = None

    @model_validator(mode="after")
    def _check(self) -> ReminderBody:
        _days_ok(self.days)
        if not self.text.strip():
            raise ValueError("text must not be blank")
        if self.kind == "medication" and (not self.days or self.on_date is not None):
            raise ValueError("a medication reminder needs days and no on_date")
        if self.kind == "appointment" and (self.on_date is None or self.days):
            raise ValueError("an appointment reminder needs on_date and no days")
        return self


class ReminderPatch(Strict):
    """Change a reminder: only what is given changes."""

    text: str | None = Field(default=None, min_length=1, max_length=200)
    at: time | None = None
    days: list[int] | None = Field(default=None, max_length=7)
    on_date: date | None = None
    enabled: bool | None = None
    language: Literal["zh-CN", "en"] | None = None

    @model_validator(mode="after")
    def _check(self) -> ReminderPatch:
        _days_ok(self.days)
        if self.text is not None and not self.text.strip():
            raise ValueError("text must not be blank")
        return self


class ReminderOut(Model):
    """A reminder and where its current call stands."""

    id: int
    resident_id: int
    kind: str
    text: str
    at: str
    days: list[int]
    on_date: str | None
    enabled: bool
    language: str | None
    #: the occurrence under way, if any, its tries so far, and the last one settled
    due_at: datetime | None
    attempts: int
    done_through: datetime | None
    updated_by: str
    updated_at: datetime


def _reminders(request: web.Request) -> Reminders:
    reminders: Reminders = services(request).dispatch.reminders
    return reminders


def _public(r: Reminder) -> dict[str, object]:
    return {
        "id": r.id, "resident_id": r.resident_id, "kind": r.kind, "text": r.text,
        "at": r.at.strftime("%H:%M"), "days": r.days,
        "on_date": r.on_date.isoformat() if r.on_date else None, "enabled": r.enabled,
        "language": r.language, "due_at": r.due_at, "attempts": r.attempts,
        "done_through": r.done_through, "updated_by": r.updated_by, "updated_at": r.updated_at,
    }  # fmt: skip


@API.route(
    "GET",
    "/residents/{resident_id}/reminders",
    summary="A resident's medication and appointment reminders",
    roles=OPERATORS,
    response=list[ReminderOut],
    tag="reminders",
)
async def list_reminders(request: web.Request) -> web.Response:
    """Read."""
    rows = await _reminders(request).of_resident(int_param(request, "resident_id"))
    return ok([_public(r) for r in rows])


@API.route(
    "POST",
    "/residents/{resident_id}/reminders",
    summary="Add a medication or appointment reminder call for a resident",
    roles=OPERATORS,
    response=ReminderOut,
    body=ReminderBody,
    tag="reminders",
)
async def add_reminder(request: web.Request) -> web.Response:
    """Add."""
    user = user_of(request)
    resident_id = int_param(request, "resident_id")
    data = await body(request, ReminderBody)
    row = await _reminders(request).add(
        resident_id,
        actor=user.username,
        kind=data.kind,
        text=data.text.strip(),
        at=parse_time(data.at),
        days=sorted(data.days),
        on_date=data.on_date,
        enabled=data.enabled,
        language=data.language,
    )
    return ok(_public(row), status=201)


@API.route(
    "PATCH",
    "/reminders/{reminder_id}",
    summary="Change a reminder (text, time, days, date, on/off, language)",
    roles=OPERATORS,
    response=ReminderOut,
    body=ReminderPatch,
    tag="reminders",
)
async def update_reminder(request: web.Request) -> web.Response:
    """Change."""
    user = user_of(request)
    data = await body(request, ReminderPatch)
    values = data.model_dump(exclude_unset=True)
    if "text" in values and values["text"] is not None:
        values["text"] = values["text"].strip()
    if values.get("at") is not None:
        values["at"] = parse_time(values["at"])
    if values.get("days") is not None:
        values["days"] = sorted(values["days"])
    for name in ("text", "at", "days", "enabled"):
        if name in values and values[name] is None:
            del values[name]
    row = await _reminders(request).update(
        int_param(request, "reminder_id"), actor=user.username, **values
    )
    return ok(_public(row))


@API.route(
    "DELETE",
    "/reminders/{reminder_id}",
    summary="Remove a reminder",
    roles=OPERATORS,
    response=Done,
    tag="reminders",
)
async def delete_reminder(request: web.Request) -> web.Response:
    """Remove."""
    user = user_of(request)
    await _reminders(request).delete(int_param(request, "reminder_id"), actor=user.username)
    return ok({"ok": True})
