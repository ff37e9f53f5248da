"""A booked visit's window as the API takes it (`booking_api`, and a new ticket's body)."""

from __future__ import annotations

from datetime import date, time

from pydantic import Field

from operator_console.api import Strict


class BookingBody(Strict):
    """A booked window: a local date and a start and end time (HH:MM, Asia/Shanghai)."""

    on: date = Field(alias="date")
    start: time = Field(alias="from")
    end: time = Field(alias="until")
