"""Twilio webhooks handed from a standby to the owner through the command table
(DESIGN.md section 12; `providers.twilio.webhooks` says what each side does).

- a standby hands each signed webhook to the owner as a `twilio` command and answers
  with the owner's TwiML (`forward`); the owner does the work without waiting for
  dispatch (`handler`: a wait would hold every other command behind it), so a call with
  no command yet is told to ask again after its hold pause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from eventlog.commands import CommandFailed, CommandQueue, NoAnswer
from providers.twilio.webhooks import Webhooks

log = logging.getLogger(__name__)

#: the command table's target for a handed-over webhook
TARGET = "twilio"


def forward(
    hooks: Webhooks, queue: CommandQueue, owner: Callable[[], bool], *, timeout_s: float
) -> None:
    """On a process that may stand by: webhooks go to the owner while this one is not
    (`owner()` says whether it is)."""

    async def hand_over(
        route: str, params: dict[str, str], query: dict[str, str], token: str
    ) -> tuple[int, str] | None:
        if owner():
            return None  # this process does the work itself
        args = {"params": params, "query": query, "token": token}
        try:
            status, body = await queue.call(TARGET, route, args, timeout_s=timeout_s)
        except (NoAnswer, CommandFailed) as exc:
            log.warning("twilio webhook %s: no owner answered (%s)", route, type(exc).__name__)
            return hooks.unowned(route, query)
        return int(status), str(body)

    hooks.forward = hand_over


def handler(hooks: Webhooks) -> Any:
    """The owner's side of `forward`: one handed-over webhook -> [status, body]."""

    async def run(route: str, args: dict[str, Any]) -> list[Any]:
        status, body = await hooks.handle(
            route,
            {str(k): str(v) for k, v in args["params"].items()},
            {str(k): str(v) for k, v in args["query"].items()},
            str(args.get("token", "")),
            wait=False,
        )
        return [status, body]

    return run
