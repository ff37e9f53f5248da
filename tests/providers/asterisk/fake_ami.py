"""A fake Asterisk for tests: an AMI server and a FastAGI client on 127.0.0.1 only.

It speaks the real wire protocol (greeting line, CRLF frames, ActionID echo, EventList
responses) and records every action it receives across connections. Tests steer it:
refuse logins, stop answering Ping, drop the connection when an action arrives, replay
captured bytes verbatim, split writes at chosen byte offsets (inside a UTF-8 character
too), and play Asterisk's side of a FastAGI session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterable

GREETING = b"Asterisk Call Manager/9.0.0\r\n"
Action = dict[str, list[str]]


def frame(**headers: str) -> bytes:
    """One AMI message; keys may use '_' for '-' (``Cause_txt`` -> ``Cause-txt``)."""
    lines = [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def channel_event(event: str, channel: str, uniqueid: str, **extra: str) -> bytes:
    """An event with the channel snapshot headers Asterisk 20 puts on channel events."""
    headers = {
        "Event": event,
        "Privilege": "call,all",
        "Channel": channel,
        "ChannelState": extra.pop("ChannelState", "6"),
        "ChannelStateDesc": extra.pop("ChannelStateDesc", "Up"),
        "CallerIDNum": extra.pop("CallerIDNum", "<unknown>"),
        "CallerIDName": extra.pop("CallerIDName", "<unknown>"),
        "Context": extra.pop("Context", "yijing-hotline"),
        "Exten": extra.pop("Exten", "12349"),
        "Priority": "1",
        "Uniqueid": uniqueid,
        "Linkedid": extra.pop("Linkedid", uniqueid),
    }
    headers.update(extra)
    return frame(**headers)


class FakeAMI:
    """The AMI side of a fake Asterisk."""

    def __init__(self, *, username: str = "yijing", secret: str = "s3cret") -> None:
        self.username = username
        self.secret = secret
        self.actions: list[Action] = []
        self.channels: list[dict[str, str]] = []
        self.answer_ping = True
        self.drop_on: set[str] = set()
        #: action name (lower case) -> the Message of an Error response to give it, once
        self.refuse: dict[str, str] = {}
        self.connections = 0
        self.logins = 0
        self.failed_logins = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._port = 0
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> FakeAMI:
        """Listen on an ephemeral loopback port."""
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def go_away(self) -> None:
        """Stop listening and drop every client: reconnects are refused (Asterisk down)."""
        assert self._server is not None
        self._server.close()
        self.drop()
        await self._server.wait_closed()

    async def come_back(self) -> None:
        """Listen again on the same port."""
        self._server = await asyncio.start_server(
            self._client, "127.0.0.1", self._port, reuse_address=True
        )

    @property
    def port(self) -> int:
        """The listening port (the same after `come_back`)."""
        return self._port

    async def close(self) -> None:
        """Stop listening and drop every client."""
        self.drop()
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def named(self, name: str) -> list[Action]:
        """Every recorded action with that name (case-insensitive)."""
        return [a for a in self.actions if a["Action"][0].lower() == name.lower()]

    def drop(self) -> None:
        """Close every client socket at once (Asterisk restarted, cable pulled)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    @property
    def clients(self) -> int:
        """Connected, logged-in or not."""
        return len(self._writers)

    async def send(self, data: bytes, *, split_at: Iterable[int] = (), pause: float = 0.02) -> None:
        """Write bytes to every client; each split offset starts a separate TCP write."""
        cuts = [0, *sorted(set(split_at)), len(data)]
        for writer in list(self._writers):
            for start, end in itertools.pairwise(cuts):
                if end <= start:
                    continue
                writer.write(data[start:end])
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.connections += 1
        self._writers.append(writer)
        writer.write(GREETING)
        buf = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                while b"\r\n\r\n" in buf:
                    raw, buf = buf.split(b"\r\n\r\n", 1)
                    action: Action = {}
                    for line in raw.decode("utf-8").split("\r\n"):
                        key, _, value = line.partition(": ")
                        action.setdefault(key, []).append(value)
                    if "Action" in action:
                        self._answer(action, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    def _answer(self, action: Action, writer: asyncio.StreamWriter) -> None:
        self.actions.append(action)
        name = action["Action"][0].lower()
        aid = action.get("ActionID", [""])[0]
        if name in self.drop_on:
            self.drop_on.discard(name)
            writer.transport.abort()
            return
        if name in self.refuse:
            writer.write(frame(Response="Error", ActionID=aid, Message=self.refuse.pop(name)))
            return
        if name == "login":
            if action.get("Username") == [self.username] and action.get("Secret") == [self.secret]:
                self.logins += 1
                writer.write(
                    frame(Response="Success", ActionID=aid, Message="Authentication accepted")
                )
                writer.write(
                    frame(Event="FullyBooted", Privilege="system,all", Status="Fully Booted")
                )
            else:
                self.failed_logins += 1
                writer.write(frame(Response="Error", ActionID=aid, Message="Authentication failed"))
        elif name == "ping":
            if self.answer_ping:
                writer.write(frame(Response="Success", ActionID=aid, Ping="Pong", Timestamp="1.0"))
        elif name == "coreshowchannels":
            writer.write(
                frame(
                    Response="Success",
                    ActionID=aid,
                    EventList="start",
                    Message="Channels will follow",
                )
            )
            for row in self.channels:
                writer.write(frame(Event="CoreShowChannel", ActionID=aid, **row))
            writer.write(
                frame(
                    Event="CoreShowChannelsComplete",
                    ActionID=aid,
                    EventList="Complete",
                    ListItems=str(len(self.channels)),
                )
            )
        elif name == "originate":
            writer.write(
                frame(Response="Success", ActionID=aid, Message="Originate successfully queued")
            )
        elif name == "queuestatus":
            writer.write(
                frame(Response="Success", ActionID=aid, Message="Queue status will follow")
            )
            writer.write(frame(Event="QueueParams", ActionID=aid, Queue="hotline", Calls="0"))
            writer.write(frame(Event="QueueStatusComplete", ActionID=aid, EventList="Complete"))
        elif name == "logoff":
            writer.write(
                frame(Response="Goodbye", ActionID=aid, Message="Thanks for all the fish.")
            )
            writer.close()
        else:
            writer.write(frame(Response="Success", ActionID=aid, Message=f"{name} done"))


class FakeAgiChannel:
    """Asterisk's side of one FastAGI session: connect, send the AGI environment, answer."""

    def __init__(self, port: int, *, ref: str, channel: str, uniqueid: str) -> None:
        self.port = port
        self.env = {
            "agi_network": "yes",
            "agi_network_script": "yijing",
            "agi_request": f"agi://127.0.0.1:{port}/yijing",
            "agi_channel": channel,
            "agi_language": "en",
            "agi_uniqueid": uniqueid,
            "agi_callerid": "13800000001",
            "agi_calleridname": "王秀英",
            "agi_context": "yijing-hotline",
            "agi_extension": "12349",
            "agi_priority": "3",
            "agi_arg_1": ref,
        }
        self.commands: list[str] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the session as Asterisk's AGI() application does."""
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        env = "".join(f"{k}: {v}\n" for k, v in self.env.items()) + "\n"
        self._writer.write(env.encode("utf-8"))
        await self._writer.drain()

    async def serve(self, reply: Callable[[str], str | None], *, limit: int = 50) -> None:
        """Answer commands with `reply(command)` until it returns None or the script ends."""
        assert self._reader is not None and self._writer is not None
        for _ in range(limit):
            line = await self._reader.readline()
            if not line:
                return
            command = line.decode("utf-8").rstrip("\n")
            self.commands.append(command)
            answer = reply(command)
            if answer is None:
                self._writer.close()
                return
            self._writer.write(answer.encode("utf-8") + b"\n")
            await self._writer.drain()
            if command == "HANGUP" or command.startswith("SET VARIABLE YIJING_TRANSFER"):
                return

    async def close(self) -> None:
        """Hang up the AGI socket."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
