"""The event log as a table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from eventlog.db import BigId, JSONType, UTCDateTime, utcnow


class Event(SQLModel, table=True):
    """One row of the event log: the audit trail, the live feed and the figures' source."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_subject", "subject", "subject_id"),)

    seq: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    name: str = Field(max_length=64, index=True)
    subject: str = Field(max_length=16)
    subject_id: str = Field(max_length=64)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor: str = Field(default="system", max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType))
