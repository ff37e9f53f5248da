"""The figures as a plain-text table for the command line (`yijing report`)."""

from __future__ import annotations

from dispatch.figures import Report


def render_table(rep: Report) -> str:
    """A plain-text table for the CLI."""
    rows = [*rep.groups, rep.total]
    head = ["", "受理", "办结", "办结率", "解决率", "评价率", "满意率", "按时率", "升级", "爽约"]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}%"

    lines = [head]
    for r in rows:
        lines.append(
            [
                r.key,
                str(r.received),
                str(r.closed),
                pct(r.closure_rate),
                pct(r.solved_rate),
                pct(r.rated_rate),
                pct(r.satisfied_rate),
                pct(r.deadlines_met_rate),
                str(r.escalated),
                str(r.no_shows),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )
    c = rep.calls
    text += (
        f"\n\ncalls offered {c.offered}, waited for an operator {c.queued}; "
        f"answered within 60 s {pct(c.answered_60s_rate)}, within 180 s "
        f"{pct(c.answered_180s_rate)}; abandoned {pct(c.abandoned_rate)}"
    )
    m = rep.emergencies
    if m.emergencies:
        text += (
            f"\nemergencies {m.emergencies}: to a human median {m.time_to_human_median_s} s, "
            f"p90 {m.time_to_human_p90_s} s, within 15 s {pct(m.answered_15s_rate)}; "
            f"overflows {m.overflows}, connected to 120 {m.connected_120}"
        )
    return text
