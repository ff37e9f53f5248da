"""The bottom of the stack: the event log and what writes it.

Every package above (`registry`, `dispatch`, `operator_console`) writes its changes
through a unit of work from here, so the rows and the events describing them commit
together, and reads the time from the `Clock` port.

- `models`: the `Event` table (one row of the log);
- `store`: `Store` (opens units of work, reads the log) and `Tx` (one unit of work);
- `bus`: `EventBus`, the in-process fan-out of committed events (WebSocket streams, and
  listeners such as the merchant index that follow registry changes);
- `relay`: on PostgreSQL, the events other processes commit, onto this process's bus
  (LISTEN/NOTIFY, catching up from the log);
- `clock`: the `Clock` port (`SystemClock`, `ManualClock`) and the local time zone;
- `db`: database plumbing every package shares (engines, sessions, column types).

Nothing here imports another package of the project.
"""
