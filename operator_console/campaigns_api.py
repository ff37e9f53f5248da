"""Notices to grids (outbound campaigns): a supervisor or admin writes one, chooses grids
and resident groups, an optional yes/no question and a pace; the service calls everyone
and shows live progress (reached, answers, unreached), with a CSV of the recipients."""

from __future__ import annotations

import csv
import io

from aiohttp import web
from pydantic import Field, field_validator
from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Campaign
from operator_console.api import (
    API,
    SUPERVISORS,
    Download,
    Model,
    Strict,
    body,
    int_param,
    ok,
    services,
    user_of,
)
from registry.schemas import GROUPS


class CampaignBody(Strict):
    """A notice: what the voice reads, to whom, the question, and its tries (the pace is
    the outbound engine's, per backend)."""

    title: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=500)
    question: str = Field(default="", max_length=200)
    grid_codes: list[str] = Field(default_factory=list, max_length=100)
    groups: list[str] = Field(default_factory=list, max_length=len(GROUPS))
    tries: int = Field(default=2, ge=1, le=5)
    retry_s: float = Field(default=1800.0, ge=60, le=86400)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        unknown = [g for g in value if g not in GROUPS]
        if unknown:
            raise ValueError(f"unknown group {unknown[0]!r}; use {', '.join(GROUPS)}")
        return value


class CampaignOut(Model):
    """A campaign and its progress."""

    id: int
    kind: str
    title: str
    text: str
    question: str
    grid_codes: list[str]
    groups: list[str]
    state: str
    created_by: str
    created_at: str
    done_at: str | None
    recipients: int
    called: int
    pending: int
    reached: int
    unreached: int
    outcomes: dict[str, int]
    answers: dict[str, int]
    done_share: float


@API.route(
    "POST",
    "/campaigns",
    summary="Send a notice: every registered resident of the grids (and groups) is called, "
    "paced; an optional yes/no question",
    roles=SUPERVISORS,
    body=CampaignBody,
    tag="campaigns",
    response=CampaignOut,
    status=201,
)
async def create(request: web.Request) -> web.Response:
    """Start a notice."""
    data: CampaignBody = await body(request, CampaignBody)
    campaigns = services(request).dispatch.campaigns
    campaign = await campaigns.create(user=user_of(request), **data.model_dump())
    assert campaign.id is not None
    return ok(await campaigns.progress(campaign.id), status=201)


@API.route(
    "GET",
    "/campaigns",
    summary="The latest notices with their progress",
    roles=SUPERVISORS,
    tag="campaigns",
    response=list[CampaignOut],
)
async def campaign_list(request: web.Request) -> web.Response:
    """The 50 newest campaigns."""
    svc = services(request)
    async with svc.store.read() as session:
        newest = select(col(Campaign.id)).order_by(col(Campaign.id).desc()).limit(50)
        wanted = [int(i) for i in (await session.execute(newest)).scalars() if i is not None]
    return ok([await svc.dispatch.campaigns.progress(i) for i in wanted])


@API.route(
    "GET",
    "/campaigns/{campaign_id}",
    summary="One notice's live progress: reached, answers per key, unreached, pending",
    roles=SUPERVISORS,
    tag="campaigns",
    response=CampaignOut,
)
async def campaign_detail(request: web.Request) -> web.Response:
    """A campaign's progress."""
    progress = await services(request).dispatch.campaigns.progress(
        int_param(request, "campaign_id")
    )
    return ok(progress)


@API.route(
    "POST",
    "/campaigns/{campaign_id}/cancel",
    summary="Stop a notice: nobody else is called (409 when it is over)",
    roles=SUPERVISORS,
    tag="campaigns",
    response=CampaignOut,
)
async def cancel(request: web.Request) -> web.Response:
    """Cancel a running campaign."""
    campaigns = services(request).dispatch.campaigns
    cid = int_param(request, "campaign_id")
    await campaigns.cancel(cid, user=user_of(request))
    return ok(await campaigns.progress(cid))


@API.route(
    "GET",
    "/campaigns/{campaign_id}/recipients.csv",
    summary="The notice's recipients as CSV: resident, grid, tries, outcome, answer "
    "(never a number)",
    roles=SUPERVISORS,
    tag="campaigns",
    response=Download,
)
async def recipients_csv(request: web.Request) -> web.Response:
    """One line per recipient."""
    cid = int_param(request, "campaign_id")
    rows = await services(request).dispatch.campaigns.recipients(cid)
    out = io.StringIO()
    names = ["resident_id", "name", "grid", "attempts", "outcome", "answer", "finished_at"]
    writer = csv.DictWriter(out, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)
    return web.Response(
        text=out.getvalue(),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="notice-{cid}.csv"',
        },
    )
