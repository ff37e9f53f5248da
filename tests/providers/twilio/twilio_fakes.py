"""Loopback peers for the Twilio adapter: a REST API that records requests, and a signer.

`FakeTwilioApi` speaks the REST API's wire format (form-encoded requests, Basic auth, JSON
answers shaped like Twilio's documented ones in `fixtures/`). `TwilioSide` plays Twilio
calling our webhooks: it signs every request with the real `RequestValidator` algorithm
against the public URL, while the server under test listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from providers.base import BackendStatus, TelephonyEvent
from providers.twilio import TwilioTelephony

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://care.example.org/twilio"
PLATFORM = "+862388880000"


def fixture(name: str) -> dict[str, Any]:
    """A JSON fixture, parsed."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


@dataclass(slots=True)
class Recorded:
    """One request the fake API received."""

    method: str
    path: str
    form: MultiDict[str]
    authorization: str


@dataclass(slots=True)
class FakeTwilioApi:
    """The REST API on loopback: records requests, answers like Twilio."""

    requests: list[Recorded] = field(default_factory=list)
    sids_created: list[str] = field(default_factory=list)
    create_error: tuple[int, str] | None = None
    message_error: tuple[int, str] | None = None
    #: an HTTP status every request gets (a Twilio incident: 503), or None
    outage_status: int | None = None
    #: the next Calls.create has its connection dropped before any answer (in doubt)
    drop_create: bool = False
    account_status: int = 200
    create_gate: asyncio.Event | None = None
    #: what fetching a call says of it (a call SID -> its status); "queued" when not set
    statuses: dict[str, str] = field(default_factory=dict)
    #: conference friendly name -> its SID, made up when the first participant is added
    conferences: dict[str, str] = field(default_factory=dict)
    sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    url: str = ""
    port: int = 0
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    async def __aenter__(self) -> FakeTwilioApi:
        app = web.Application()
        app.router.add_get("/2010-04-01/Accounts/{account}.json", self._account)
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls.json", self._create)
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{sid}.json", self._update)
        app.router.add_get("/2010-04-01/Accounts/{account}/Calls/{sid}.json", self._fetch)
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._message)
        base = "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants"
        app.router.add_post(base + ".json", self._add_participant)
        app.router.add_post(base + "/{participant}.json", self._update_participant)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def go_down(self) -> None:
        """Stop listening: connections are refused, as when the API cannot be reached."""
        assert self._site is not None and self._runner is not None
        await self._site.stop()
        self._site = None
        # kept-alive connections too: the client must not reach the API through them
        server = self._runner.server
        assert server is not None
        for handler in server.connections:
            handler.force_close()

    async def come_back(self) -> None:
        """Listen again on the same port."""
        assert self._runner is not None and self._site is None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    def calls_created(self) -> list[Recorded]:
        """Every Calls.create request."""
        return [r for r in self.requests if r.path.endswith("/Calls.json")]

    def messages_sent(self) -> list[Recorded]:
        """Every Messages.create request."""
        return [r for r in self.requests if r.path.endswith("/Messages.json")]

    def calls_updated(self) -> list[Recorded]:
        """Every call update request (hangup, redirect)."""
        return [r for r in self.requests if r.method == "POST" and "/Calls/" in r.path]

    def participants_added(self) -> list[Recorded]:
        """Every Participants.create request."""
        return [r for r in self.requests if r.path.endswith("/Participants.json")]

    def participants_updated(self) -> list[Recorded]:
        """Every participant update request (hold, unhold, end-conference-on-exit)."""
        return [r for r in self.requests if "/Participants/" in r.path]

    async def _record(self, request: web.Request) -> Recorded | web.Response:
        form = MultiDict((k, str(v)) for k, v in (await request.post()).items())
        auth = request.headers.get("Authorization", "")
        self.requests.append(Recorded(request.method, request.path, form, auth))
        if self.outage_status is not None:
            body = {"code": 20500, "message": "Service unavailable", "status": self.outage_status}
            return web.json_response(body, status=self.outage_status)
        expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if auth != expected or request.match_info["account"] != ACCOUNT:
            return web.json_response({"code": 20003, "status": 401}, status=401)
        return self.requests[-1]

    async def _account(self, request: web.Request) -> web.Response:
        got = await self._record(request)
        if isinstance(got, web.Response):
            return got
        if self.account_status != 200:
            body = {"code": 20003, "status": self.account_status}
            return web.json_response(body, status=self.account_status)
        body = fixture("account.json") | {"sid": ACCOUNT}
        return web.json_response(body)

    async def _create(self, request: web.Request) -> web.Response:
        got = await self._record(request)
        if isinstance(got, web.Response):
            return got
        if self.create_gate is not None:
            await self.create_gate.wait()
        if self.drop_create:
            # the request arrived, the answer never does: the client cannot tell the outcome
            self.drop_create = False
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if self.create_error is not None:
            status, name = self.create_error
            return web.json_response(fixture(name), status=status)
        sid = f"CA{next(self.sids):032x}"
        self.sids_created.append(sid)
        body = copy.deepcopy(fixture("call_created.json"))
        body.update(sid=sid, account_sid=ACCOUNT, to=got.form["To"], status="queued")
        body["from"] = got.form["From"]
        return web.json_response(body, status=201)

    async def _message(self, request: web.Request) -> web.Response:
        got = await self._record(request)
        if isinstance(got, web.Response):
            return got
        if self.message_error is not None:
            status, name = self.message_error
            return web.json_response(fixture(name), status=status)
        sid = f"SM{next(self.sids):032x}"
        body = copy.deepcopy(fixture("message_created.json"))
        body.update(sid=sid, account_sid=ACCOUNT, to=got.form["To"], body=got.form["Body"])
        body["from"] = got.form["From"]
        return web.json_response(body, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        got = await self._record(request)
        if isinstance(got, web.Response):
            return got
        body = copy.deepcopy(fixture("call_created.json"))
        body.update(sid=request.match_info["sid"], account_sid=ACCOUNT)
        body["status"] = got.form.get("Status", "in-progress")
        if "Status" in got.form:
            self.statuses[request.match_info["sid"]] = got.form["Status"]
        return web.json_response(body)

    async def _add_participant(self, request: web.Request) -> web.Response:
        got = await self._record(request)
        if isinstance(got, web.Response):
            return got
        name = request.match_info["conference"]
        if name.startswith("CF"):
            conference = name
        else:
            conference = self.conferences.setdefault(name, f"CF{len(self.conferences) + 1:032x}")
        sid = f"CA{next(self.sids):032x}"
        self.sids_created.append(sid)
        body = copy.deepcopy(fixture("participant.json"))
        body.update(
            account_sid=ACCOUNT,
            call_sid=sid,
            conference_sid=conference,
            label=got.form.get("Label"),
            end_conference_on_exit=got.form.get("EndConferenceOnExit") == "true",
        )
        return web.json_response(body, status=201)

    async def _fetch(self, request: web.Request) -> web.Response:
        got = await self._record(request)
        if isinstance(got, web.Response):
            return got
        sid = request.match_info["sid"]
        body = copy.deepcopy(fixture("call_created.json"))
        body.update(sid=sid, account_sid=ACCOUNT, status=self.statuses.get(sid, "queued"))
        return web.json_response(body)

    def calls_fetched(self) -> list[Recorded]:
        """Every call fetch (a resync after taking over)."""
        return [r for r in self.requests if r.method == "GET" and "/Calls/" in r.path]

    async def _update_participant(self, request: web.Request) -> web.Response:
        got = await self._record(request)
        if isinstance(got, web.Response):
            return got
        body = copy.deepcopy(fixture("participant.json"))
        body.update(
            account_sid=ACCOUNT,
            conference_sid=request.match_info["conference"],
            label=request.match_info["participant"],
            hold=got.form.get("Hold") == "true",
            status="connected",
        )
        return web.json_response(body)


class Recorder:
    """Collects the adapter's events from its public `events()` iterator."""

    def __init__(self, adapter: TwilioTelephony) -> None:
        self.events: list[TelephonyEvent] = []
        self._arrived = asyncio.Condition()
        self._task = asyncio.get_running_loop().create_task(self._pump(adapter))

    async def _pump(self, adapter: TwilioTelephony) -> None:
        async for event in adapter.events():
            async with self._arrived:
                self.events.append(event)
                self._arrived.notify_all()

    async def wait_for(self, event: TelephonyEvent, timeout_s: float = 2.0) -> None:
        """Wait until `event` has arrived."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: event in self.events), timeout_s)

    async def settle(self) -> None:
        """Let queued events reach the list."""
        for _ in range(5):
            await asyncio.sleep(0)

    async def calls(self) -> list[TelephonyEvent]:
        """Call events so far (backend status left out)."""
        await self.settle()
        return [e for e in self.events if not isinstance(e, BackendStatus)]

    async def take(self) -> list[TelephonyEvent]:
        """Call events since the last take."""
        events = await self.calls()
        self.events.clear()
        return events

    async def close(self) -> None:
        """Stop collecting."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def sign(token: str, url: str, params: Mapping[str, str]) -> str:
    """The X-Twilio-Signature Twilio would send for a POST to `url` with `params`."""
    return RequestValidator(token).compute_signature(url, dict(params))


class TwilioSide:
    """Plays Twilio: posts signed webhooks to the server under test."""

    def __init__(self, client: TestClient[Any, Any], *, token: str = TOKEN) -> None:
        self.client = client
        self.token = token

    async def post(
        self,
        route: str,
        params: Mapping[str, str],
        *,
        query: Mapping[str, str | int] | None = None,
        signature: str | Callable[[str, Mapping[str, str]], str] | None = sign,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        """POST to /twilio/<route>?query, signed against the public URL unless told not to."""
        qs = f"?{urlencode(query)}" if query else ""
        sent = dict(headers or {})
        if callable(signature):
            sent["X-Twilio-Signature"] = sign(self.token, f"{PUBLIC}/{route}{qs}", params)
        elif signature is not None:
            sent["X-Twilio-Signature"] = signature
        resp = await self.client.post(f"/twilio/{route}{qs}", data=dict(params), headers=sent)
        return resp.status, await resp.text()

    async def status(self, sid: str, status: str, *, ref: str | None = None, **extra: str) -> int:
        """A status callback."""
        params = {"CallSid": sid, "CallStatus": status, "AccountSid": ACCOUNT, **extra}
        code, _ = await self.post("status", params, query={"ref": ref} if ref else None)
        return code

    async def voice(self, sid: str, *, ref: str | None = None, **extra: str) -> Doc:
        """The voice URL: an answered outbound call (ref), an inbound call, or a hold poll."""
        params = {"CallSid": sid, "AccountSid": ACCOUNT, "CallStatus": "in-progress", **extra}
        code, body = await self.post("voice", params, query={"ref": ref} if ref else None)
        assert code == 200, body
        return Doc(body)

    async def gather(
        self, doc: Doc, sid: str, digits: str | None, *, speech: str | None = None
    ) -> Doc:
        """Follow a document's Gather: press `digits`, or None for no input; `speech`:
        what the caller said instead (Twilio's SpeechResult and Confidence)."""
        action = doc.gather_action()
        assert action is not None, doc.xml
        assert action.startswith(PUBLIC + "/gather?"), action
        qs = action.removeprefix(PUBLIC + "/gather")
        params = {"CallSid": sid, "AccountSid": ACCOUNT, "CallStatus": "in-progress"}
        if digits is not None:
            params["Digits"] = digits
        if speech is not None:
            params |= {"SpeechResult": speech, "Confidence": "0.62"}
        headers = {"X-Twilio-Signature": sign(self.token, action, params)}
        resp = await self.client.post(f"/twilio/gather{qs}", data=params, headers=headers)
        body = await resp.text()
        assert resp.status == 200, body
        return Doc(body)

    async def follow(self, doc: Doc, sid: str) -> Doc:
        """Follow a document's final Redirect (the hold loop)."""
        target = doc.redirect()
        assert target is not None, doc.xml
        route, _, qs = target.removeprefix(PUBLIC + "/").partition("?")
        params = {"CallSid": sid, "AccountSid": ACCOUNT, "CallStatus": "in-progress"}
        headers = {"X-Twilio-Signature": sign(self.token, target, params)}
        resp = await self.client.post(f"/twilio/{route}?{qs}", data=params, headers=headers)
        body = await resp.text()
        assert resp.status == 200, body
        return Doc(body)


@dataclass(slots=True)
class Rig:
    """The adapter, its event recorder, Twilio's side of the webhooks, and the REST fake."""

    adapter: TwilioTelephony
    events: Recorder
    twilio: TwilioSide
    api: FakeTwilioApi


class Doc:
    """A TwiML answer, parsed."""

    def __init__(self, xml: str) -> None:
        self.xml = xml
        self.root = ElementTree.fromstring(xml)
        assert self.root.tag == "Response", xml

    def verbs(self) -> list[str]:
        """Top-level verb names, in order."""
        return [child.tag for child in self.root]

    def gather(self) -> ElementTree.Element | None:
        """The Gather verb, if any."""
        return self.root.find("Gather")

    def gather_action(self) -> str | None:
        """Where the Gather posts."""
        node = self.gather()
        return node.get("action") if node is not None else None

    def redirect(self) -> str | None:
        """The last Redirect's target."""
        nodes = self.root.findall("Redirect")
        return (nodes[-1].text or "").strip() if nodes else None

    def said(self) -> list[str]:
        """Every spoken text, in document order (Gather content included)."""
        texts = []
        for node in self.root.iter("Say"):
            texts.append("".join(node.itertext()).strip())
        return texts

    def says(self) -> list[ElementTree.Element]:
        """Every Say element, in document order."""
        return list(self.root.iter("Say"))
