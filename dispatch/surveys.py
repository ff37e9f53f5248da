"""The satisfaction survey that closes a ticket: 1 satisfied, 2 basically satisfied,
3 not satisfied (which opens a follow-up for the supervisor).

After completion (`ScheduleSurvey`) the resident is called after a delay, never in the
quiet hours; unanswered calls are retried, then (once) the first emergency contact is
asked on the resident's behalf. Whatever happens, the ticket closes when its survey
window ends (`close:` timer), rated or not.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import SURVEY_PURPOSES, Core
from dispatch.effects import CancelTimer, Command, PlayFlow, ScheduleTimer
from dispatch.machines import IllegalTransition
from dispatch.machines import ticket as tm
from dispatch.models import Call, Ticket
from dispatch.outbound import Outbound, Purpose, ticket_parts
from dispatch.timer_keys import TimerKey
from eventlog.clock import LOCAL_TZ
from eventlog.store import Tx
from providers.base import OriginateFailure
from registry import repository as repo
from registry.models import EmergencyContact, ResidentPhone, User

log = logging.getLogger(__name__)


class Surveys:
    """Survey calls after a visit, their ratings, and closing rated or unrated tickets."""

    def __init__(self, core: Core, outbound: Outbound) -> None:
        self.core = core
        self.outbound = outbound
        handling = Purpose(
            answered=self._answered,
            wanted=self._wanted,
            ended=self._unanswered_call,
            failed=self._failed,
            own_caller_id=False,
            quiet_hours=True,
        )
        for purpose in SURVEY_PURPOSES:
            outbound.serve(purpose, handling)

    def survey_time(self, attempt: int) -> datetime:
        """When to call: after a delay, never in the quiet hours of the night."""
        config = self.core.config
        delay = config.survey_delay_s if attempt == 0 else config.survey_retry_s
        when = (self.core.now() + timedelta(seconds=delay)).astimezone(LOCAL_TZ)
        quiet_start, quiet_end = config.quiet_start, config.quiet_end
        if when.time() >= quiet_start:
            when = (when + timedelta(days=1)).replace(
                hour=quiet_end.hour, minute=quiet_end.minute, second=0, microsecond=0
            )
        elif when.time() < quiet_end:
            when = when.replace(
                hour=quiet_end.hour, minute=quiet_end.minute, second=0, microsecond=0
            )
        return when

    async def schedule(self, tx: Tx, ticket: Ticket) -> None:
        """The follow-up of a completed visit: the first survey call, and the window's end."""
        window = timedelta(seconds=self.core.config.survey_window_s)
        self.core.fx.after_commit(
            tx,
            ScheduleTimer(TimerKey.survey(ticket.id), self.survey_time(0)),
            # whatever the survey brings, the ticket closes when its window ends
            ScheduleTimer(TimerKey.close(ticket.id), self.core.now() + window),
        )

    async def _phone(self, tx: Tx, ticket: Ticket, *, family: bool) -> str | None:
        if ticket.resident_id is None:
            return None
        if family:
            stmt = (
                select(col(EmergencyContact.phone))
                .where(col(EmergencyContact.resident_id) == ticket.resident_id)
                .order_by(col(EmergencyContact.position), col(EmergencyContact.id))
            )
        else:
            stmt = (
                select(col(ResidentPhone.number))
                .where(col(ResidentPhone.resident_id) == ticket.resident_id)
                .order_by(col(ResidentPhone.id))
            )
        return (await tx.session.execute(stmt.limit(1))).scalars().first()

    async def start(self, ticket_id: int, *, family: bool | None = None) -> None:
        """Place a survey call: the resident's tries first, then (once) the first contact."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            if ticket.state != tm.TicketState.COMPLETED:
                return
            if family is None:
                family = ticket.survey_attempts >= core.config.survey_attempts
            phone = await self._phone(tx, ticket, family=family)
            if phone is None or (
                family and not core.config.survey_family and ticket.survey_attempts
            ):
                await self.close_unrated(tx, ticket, reason="no survey phone")
                return
            attempt = ticket.survey_attempts + 1
            await core.cas(tx, ticket, survey_attempts=attempt)
            call = self.outbound.record(
                tx,
                ref=f"survey-{ticket.id}-{attempt}",
                number=phone,
                purpose="survey_family" if family else "survey",
                ticket_id=ticket.id,
                resident_id=ticket.resident_id,
                registered=True,
            )
            tx.emit("survey.calling", "ticket", ticket.id, attempt=attempt, family=family)
            self.outbound.place(tx, call)

    async def survey_family(self, ticket_id: int, *, user: User) -> None:
        """Call the resident's first emergency contact to rate on the resident's behalf."""
        async with self.core.store.read() as session:
            ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            raise repo.NotFound("ticket", ticket_id)
        if ticket.state != tm.TicketState.COMPLETED:
            raise IllegalTransition("ticket", ticket.state, tm.Rated("family"))
        await self.core.fx.run(CancelTimer(TimerKey.survey(ticket_id)))
        await self.start(ticket_id, family=True)

    async def finished(self, ref: str, outcome: str, variables: dict[str, str]) -> None:
        """The survey flow ended: a rating closes the ticket (a bad one opens a follow-up)."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.ticket_id is None:
                return
            ticket = await core.get(tx, Ticket, call.ticket_id, "ticket")
            if ticket.state != tm.TicketState.COMPLETED:
                return
            rating = variables.get("rating")
            if outcome != "rated" or not rating:
                return  # the hang-up that follows counts the attempt as unrated
            rated_by = "family" if call.purpose == "survey_family" else "resident"
            state, commands = tm.transition(ticket.state, tm.Rated(rating))
            follow_up = rating == "not_satisfied"
            await core.cas(
                tx,
                ticket,
                state=state,
                rating=rating,
                rated_at=core.now(),
                rated_by=rated_by,
                follow_up=follow_up,
            )
            tx.emit(
                "ticket.rated",
                "ticket",
                ticket.id,
                rating=rating,
                rated_by=rated_by,
                merchant_id=ticket.merchant_id,
                actor=rated_by,
            )
            await core.fx.ticket(tx, ticket, commands)
            if follow_up:
                tx.emit("alert.not_satisfied", "ticket", ticket.id, reason="not satisfied")
                tx.emit(
                    "followup.opened",
                    "ticket",
                    ticket.id,
                    level="supervisor",
                    merchant_id=ticket.merchant_id,
                    reason="not satisfied",
                )
            state, commands = tm.transition(ticket.state, tm.Close())
            await core.cas(tx, ticket, state=state, closed_at=core.now())
            tx.emit("ticket.closed", "ticket", ticket.id, rated=True)
            await core.fx.ticket(tx, ticket, commands)
            core.fx.after_commit(
                tx,
                CancelTimer(TimerKey.survey(call.ticket_id)),
                CancelTimer(TimerKey.close(call.ticket_id)),
            )

    def _tries(self) -> int:
        config = self.core.config
        return config.survey_attempts + (1 if config.survey_family else 0)

    async def unanswered(self, tx: Tx, ticket_id: int) -> None:
        """A survey call got no rating: try again later, or close the ticket unrated."""
        ticket = await self.core.get(tx, Ticket, ticket_id, "ticket")
        if ticket.state != tm.TicketState.COMPLETED:
            return
        if ticket.survey_attempts < self._tries():
            when = self.survey_time(ticket.survey_attempts)
            tx.emit("survey.retry", "ticket", ticket.id, at=when.isoformat())
            self.core.fx.after_commit(tx, ScheduleTimer(TimerKey.survey(ticket.id), when))
        else:
            await self.close_unrated(tx, ticket, reason="no answer")

    async def close_unrated(self, tx: Tx, ticket: Ticket, *, reason: str) -> None:
        """Close a completed ticket without a rating."""
        state, commands = tm.transition(ticket.state, tm.Close())
        await self.core.cas(tx, ticket, state=state, closed_at=self.core.now())
        tx.emit("survey.not_rated", "ticket", ticket.id, reason=reason)
        tx.emit("ticket.closed", "ticket", ticket.id, rated=False, reason=reason)
        await self.core.fx.ticket(tx, ticket, commands)

    async def window_closed(self, ticket_id: int) -> None:
        """The survey window passed: a ticket still unrated closes, its survey timer goes."""
        async with self.core.store.tx() as tx:
            ticket = await tx.session.get(Ticket, ticket_id, populate_existing=True)
            if ticket is not None and ticket.state == tm.TicketState.COMPLETED:
                await self.close_unrated(tx, ticket, reason="survey window passed")
            self.core.fx.after_commit(tx, CancelTimer(TimerKey.survey(ticket_id)))

    # -- the survey call (purposes "survey", "survey_family") ------------------------------
    async def _answered(self, tx: Tx, call: Call) -> list[Command]:
        if call.ticket_id is None:
            return []
        _, category, resident = await ticket_parts(tx, call.ticket_id)
        lang = resident.language if resident else "zh-CN"
        return [PlayFlow(call.ref, "survey", {"category": category.name_zh}, lang)]

    async def _unanswered_call(self, tx: Tx, call: Call) -> None:
        # rated calls have left `completed` already; anything else is unrated
        if call.ticket_id is not None:
            await self.unanswered(tx, call.ticket_id)

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        await self._unanswered_call(tx, call)

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        if call.ticket_id is None:
            return False
        ticket = await tx.session.get(Ticket, call.ticket_id, populate_existing=True)
        return ticket is not None and ticket.state == tm.TicketState.COMPLETED
