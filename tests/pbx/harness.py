"""The real-PBX tier's parts: the cached Asterisk 20, SIPp phones, and Yijing as a process.

- `find_asterisk` says where `scripts/ensure-asterisk.sh` left its build, or why there is
  none (the tier then skips with that reason);
- `Pbx` runs that Asterisk on loopback with a configuration of its own: a base (asterisk.conf,
  modules, chan_sip with the desk phones) plus exactly what `yijing asterisk-conf` writes
  for a site (`providers.asterisk.install`), so the install notes are what runs here;
- `Sipp` plays residents (UAC), desk phones and merchants (UAS) with RFC 2833 key presses,
  one pcap per press (Asterisk drops a digit whose RTP timestamp it has seen);
- `Yijing` is `yijing run` in a process of its own (so it can be killed with SIGKILL),
  spoken to over its HTTP API and WebSocket like the console does.

Used by `tests/pbx/conftest.py` and by `bench/pbx_surge.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from providers.asterisk.install import InstallOptions, install

ROOT = Path(__file__).resolve().parents[2]
AMI_SECRET = "tier-secret-loopback-only"
DEMO_PASSWORD = "demo-pass-123"
#: demo operators' user ids get a desk phone each (SIP/<id>)
DESK_IDS = range(1, 21)


def _cache_root() -> Path:
    if os.access("/var/cache/yijing", os.W_OK):
        return Path("/var/cache/yijing")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yijing"


def find_asterisk() -> tuple[Path | None, str]:
    """The Asterisk build `scripts/ensure-asterisk.sh` made, or why there is none."""
    home = Path(os.environ.get("ASTERISK_HOME") or _cache_root() / "asterisk-20")
    src = Path(
        os.environ.get("ASTERISK_SRC") or ROOT.parent / "shared/asterisk/src/asterisk-20.tar.gz"
    )
    if (home / ".built-from").exists() and (home / "sbin/asterisk").exists():
        if shutil.which("sipp") is None:
            return None, "SIPp (Debian sip-tester) is not installed: run `make system`"
        return home, ""
    if not src.exists():
        return None, f"no Asterisk source at {src} (and no build at {home})"
    return None, f"Asterisk is not built at {home}: run `make system` (scripts/ensure-asterisk.sh)"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on now (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_pair() -> int:
    """An even UDP port whose next one is free too (SIPp's media port and RTCP)."""
    for _ in range(200):
        port = free_port(socket.SOCK_DGRAM) & ~1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
                a.bind(("127.0.0.1", port))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free UDP port pair")


def prompt_build(dest: Path) -> Path:
    """The prompt audio (`yijing prompts build`), built once into the cache and copied."""
    from ivr.audio import build_prompts

    cache = _cache_root() / "prompts"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / "prompts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = build_prompts(cache)  # incremental: unchanged prompts are left alone
        if not built.ok:
            raise RuntimeError(f"prompt build failed: {built.summary()}")
        shutil.copytree(cache, dest, dirs_exist_ok=True)
    return dest


# -- Asterisk ---------------------------------------------------------------------------
_MODULES = (
    "res_timing_timerfd",
    "res_rtp_asterisk",
    "chan_sip",
    "pbx_config",
    "app_dial",
    "app_playback",
    "res_speech",
    "res_agi",
    "res_musiconhold",
    "format_wav",
    "format_pcm",
    "format_sln",
    "codec_ulaw",
    "codec_alaw",
    "bridge_simple",
    "bridge_native_rtp",
    "bridge_holding",
    "func_callerid",
    "func_channel",
    "func_talkdetect",
    "app_stack",
)


@dataclass
class Pbx:
    """One Asterisk on loopback, configured as INSTALL.md says plus a test base."""

    home: Path
    run_dir: Path
    prompts_dir: Path
    sip_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    ami_port: int = field(default_factory=free_port)
    agi_port: int = field(default_factory=free_port)
    desk_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    rtp_start: int = 20000
    rtp_end: int = 29998
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def etc(self) -> Path:
        """The configuration folder (asterisk.conf and the rest)."""
        return self.run_dir / "etc"

    def configure(self) -> None:
        """Write the base configuration, then Yijing's part through `install`."""
        etc, run = self.etc, self.run_dir
        for sub in ("etc", "varlib", "db", "spool", "run", "log", "data/sounds", "moh", "keys"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        docs = self.home / "var/lib/asterisk/documentation"
        if docs.exists() and not (run / "data/documentation").exists():
            (run / "data/documentation").symlink_to(docs)
        dirs = {
            "astetcdir": etc,
            "astmoddir": self.home / "lib/asterisk/modules",
            "astvarlibdir": run / "varlib",
            "astdbdir": run / "db",
            "astkeydir": run / "keys",
            "astdatadir": run / "data",
            "astagidir": run / "agi",
            "astspooldir": run / "spool",
            "astrundir": run / "run",
            "astlogdir": run / "log",
            "astsbindir": self.home / "sbin",
        }
        (etc / "asterisk.conf").write_text(
            "[directories]\n"
            + "".join(f"{k} => {v}\n" for k, v in dirs.items())
            + "[options]\nverbose = 2\nhighpriority = no\n"
        )
        (etc / "modules.conf").write_text(
            "[modules]\nautoload = no\n" + "".join(f"load => {m}.so\n" for m in _MODULES)
        )
        (etc / "logger.conf").write_text(
            "[logfiles]\nmessages => notice,warning,error\n"
            "full => notice,warning,error,dtmf,verbose\n"
        )
        desks = "".join(f"[{i}](desk)\n" for i in DESK_IDS)
        (etc / "sip.conf").write_text(
            "[general]\n"
            "context = yijing-hotline\n"  # the loopback "carrier": every caller is a resident
            "allowguest = yes\n"
            "alwaysauthreject = yes\n"
            f"udpbindaddr = 127.0.0.1:{self.sip_port}\n"
            "tcpenable = no\n"
            "disallow = all\nallow = ulaw\n"
            "dtmfmode = rfc2833\ndirectmedia = no\nsendrpid = no\n"
            "useragent = Yijing test PBX\n"
            "\n[desk](!)\ntype = peer\nhost = 127.0.0.1\n"
            f"port = {self.desk_port}\ninsecure = invite\ncontext = yijing-refuse\n"
            "disallow = all\nallow = ulaw\ndtmfmode = rfc2833\nqualify = no\ndirectmedia = no\n"
            + desks
        )
        # a caller waiting for an operator hears this between Yijing's announcements
        music = run / "moh/music.wav"
        if not music.exists():
            tone = ["synth", "3", "sine", "440", "vol", "0.2"]
            subprocess.run(
                ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(music), *tone], check=True
            )
        # the install notes' includes, into otherwise empty stock files
        (etc / "extensions.conf").write_text(
            "[general]\nstatic = yes\nwriteprotect = yes\n\n#include extensions_yijing.conf\n"
        )
        (etc / "manager.conf").write_text("#include manager_yijing.conf\n")
        (etc / "musiconhold.conf").write_text(
            f"[default]\nmode = files\ndirectory = {run / 'moh'}\n\n"
            "#include musiconhold_yijing.conf\n"
        )
        (etc / "rtp.conf").write_text("#include rtp_yijing.conf\n")
        install(
            InstallOptions(
                ami_secret=AMI_SECRET,
                ami_port=self.ami_port,
                agi_port=self.agi_port,
                operator_tech="SIP",
                dialout_tech="SIP",
                trunk="127.0.0.1:9",  # set per test: `merchants_at`
                rtp_start=self.rtp_start,
                rtp_end=self.rtp_end,
            ),
            etc_dir=etc,
            sounds_dir=run / "data/sounds",
            prompts_dir=self.prompts_dir,
        )

    def command(self, cli: str, *, timeout: float = 20.0) -> str:
        """An Asterisk CLI command through the control socket (`asterisk -rx`)."""
        out = subprocess.run(
            [str(self.home / "sbin/asterisk"), "-C", str(self.etc / "asterisk.conf"), "-rx", cli],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return out.stdout

    def start(self) -> None:
        """Start Asterisk and wait until it is fully booted."""
        with open(self.run_dir / "log/console.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(self.home / "sbin/asterisk"), "-f", "-C", str(self.etc / "asterisk.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Asterisk exited at start: see {self.run_dir}/log")
            if (self.run_dir / "run/asterisk.ctl").exists():
                try:
                    out = self.command("core waitfullybooted", timeout=30)
                except subprocess.TimeoutExpired:
                    continue
                if "fully booted" in out.lower():
                    return
            time.sleep(0.05)  # polling the control socket appearing, not a test's wait
        raise RuntimeError("Asterisk did not boot within 60 s")

    def stop(self, *, graceful: bool = True) -> None:
        """Stop Asterisk (`core stop now`, else SIGKILL)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        if graceful:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.command("core stop now", timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self.process = None

    def restart(self) -> None:
        """Stop and start again, same ports and configuration."""
        self.stop()
        self.start()

    def merchants_at(self, port: int) -> None:
        """Where `[yijing-dialout]` sends every outbound call: a SIPp on that port."""
        self.command(f"dialplan set global YIJING_TRUNK 127.0.0.1:{port}")

    def channels(self) -> list[str]:
        """The live channel names (`core show channels concise`)."""
        out = self.command("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]


# -- SIPp -------------------------------------------------------------------------------
def dtmf_pcap(path: Path, digit: str, press: int) -> Path:
    """One RFC 2833 key press as a pcap SIPp can play: a fresh sequence number and RTP
    timestamp per press (Asterisk drops an event whose timestamp it has already seen)."""
    event = "0123456789*#".index(digit)
    seq0, ts, ssrc = 1000 + press * 40, 160_000 * (press + 1), 0x59494A47
    packets = []
    steps = [(i * 160, False) for i in range(1, 9)] + [(8 * 160, True)] * 3
    for i, (duration, end) in enumerate(steps):
        rtp = struct.pack(
            "!BBHII", 0x80, (0x80 if i == 0 else 0) | 101, (seq0 + i) & 0xFFFF, ts, ssrc
        )
        rtp += struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
        udp = struct.pack("!HHHH", 4000, 4000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, bytes(4), bytes(4)
        )
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        packets.append((i * 20_000, frame))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for usec, frame in packets:
            f.write(struct.pack("<IIII", 1, usec, len(frame), len(frame)) + frame)
    return path


#: `Press(SPEECH, ms)`: the phone's user says something (a second of voice-band tone, the
#: energy TALK_DETECT hears as talking), no key
SPEECH = "speech"


def voice_pcap(path: Path, press: int, *, seconds: float = 1.2) -> Path:
    """Speech energy as a pcap SIPp can play: PCMU RTP of a warbling tone (the level of
    a voice), with a sequence number and timestamp of its own."""
    import math

    def ulaw(sample: int) -> int:
        sign = 0x80 if sample < 0 else 0
        magnitude = min(abs(sample), 32635) + 0x84
        exponent = max(0, magnitude.bit_length() - 8)
        mantissa = (magnitude >> (exponent + 3)) & 0x0F
        return ~(sign | (exponent << 4) | mantissa) & 0xFF

    seq0, ts0, ssrc = 5000 + press * 100, 800_000 * (press + 1), 0x59494A48
    packets = []
    for i in range(int(seconds * 50)):
        samples = [
            int(9000 * math.sin(2 * math.pi * (300 + 200 * math.sin(k / 800)) * k / 8000))
            for k in range(i * 160, (i + 1) * 160)
        ]
        payload = bytes(ulaw(v) for v in samples)
        rtp = struct.pack(
            "!BBHII", 0x80, (0x80 if i == 0 else 0), (seq0 + i) & 0xFFFF, ts0 + i * 160, ssrc
        )
        rtp += payload
        udp = struct.pack("!HHHH", 4000, 4000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, bytes(4), bytes(4)
        )
        packets.append((i * 20_000, b"\x00" * 12 + b"\x08\x00" + ip + udp))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for usec, frame in packets:
            f.write(
                struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
            )
            f.write(frame)
    return path


_SDP = """v=0
o=yijing 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
"""


@dataclass(frozen=True)
class Press:
    """After `after_ms` (counted from the previous step), press `digit`."""

    digit: str
    after_ms: int


_BYE_OK = """<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>"""


def _presses(
    folder: Path, steps: Sequence[Press], *, then_wait_ms: int, base: int = 0, prefix: str = ""
) -> str:
    """The key presses, each after its pause; a BYE from the far end is taken at any
    time (SIPp would abort the call on a BYE during a plain pause), then answered.
    `base` and `prefix` keep labels and pcaps apart when one scenario holds several."""
    xml = []
    for n, step in enumerate(steps):
        name = "star" if step.digit == "*" else "hash" if step.digit == "#" else step.digit
        if step.digit == SPEECH:
            pcap = voice_pcap(folder / f"{prefix}press{n}_speech.pcap", n)
        else:
            pcap = dtmf_pcap(folder / f"{prefix}press{n}_{name}.pcap", step.digit, n)
        xml.append(
            f'<recv request="BYE" timeout="{step.after_ms}" ontimeout="{base + n + 1}" '
            f'next="{base + 99}"/>'
        )
        xml.append(f'<label id="{base + n + 1}"/>')
        xml.append(f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
    xml.append(f'<recv request="BYE" timeout="{then_wait_ms}"/>')
    xml.append(f'<label id="{base + 99}"/>')
    xml.append(_BYE_OK)
    return "\n".join(xml)


def resident_scenario(
    folder: Path,
    steps: Sequence[Press],
    *,
    hang_up_after_ms: int | None = None,
    wait_bye_ms: int = 120_000,
) -> Path:
    """A resident calling the hotline: presses keys, then hangs up or waits for our BYE.
    The caller ID comes from the injection file's first field."""
    folder.mkdir(parents=True, exist_ok=True)
    if hang_up_after_ms is not None:
        presses = "\n".join(
            f'<pause milliseconds="{p.after_ms}"/>\n<nop><action><exec play_pcap_audio="'
            + str(
                voice_pcap(folder / f"press{n}_speech.pcap", n)
                if p.digit == SPEECH
                else dtmf_pcap(folder / f"press{n}.pcap", p.digit, n)
            )
            + '"/></action></nop>'
            for n, p in enumerate(steps)
        )
        ending = f"""<pause milliseconds="{hang_up_after_ms}"/>
<send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200" crlf="true"/>"""
    else:
        presses, ending = _presses(folder, steps, then_wait_ms=wait_bye_ms), ""
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<scenario name="resident">
<send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:[field0]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{_SDP}]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="183" optional="true"/>
<recv response="200" rtd="true"/>
<send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
{presses}
{ending}
</scenario>
"""
    path = folder / "resident.xml"
    path.write_text(xml)
    return path


def answering_scenario(
    folder: Path,
    name: str,
    steps: Sequence[Press] = (),
    *,
    answer: bool = True,
    answer_after_ms: int = 300,
    wait_bye_ms: int = 600_000,
) -> Path:
    """A phone that is called (desk phone, merchant): rings, answers (or never does, until
    the caller gives up), presses keys, and waits for the far end to hang up."""
    folder.mkdir(parents=True, exist_ok=True)
    ok = f"""<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

{_SDP}]]></send>"""
    reply = """<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>"""
    if answer:
        body = f"""<pause milliseconds="{answer_after_ms}"/>
{ok}
<recv request="ACK" crlf="true"/>
{_presses(folder, steps, then_wait_ms=wait_bye_ms)}"""
    else:
        body = f"""<recv request="CANCEL" timeout="{wait_bye_ms}"/>
{reply}
<send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[call_number]
[last_Call-ID:]
CSeq: [cseq] INVITE
Content-Length: 0

]]></send>
<recv request="ACK"/>"""
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<scenario name="{name}">
<recv request="INVITE" crlf="true"/>
<send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
{body}
</scenario>
"""
    path = folder / f"{name}.xml"
    path.write_text(xml)
    return path


#: how a phone behind `responders_scenario` answers: busy (486), never (rings until the
#: caller gives up), or it picks up and presses these keys
Respond = str | Sequence[Press]
BUSY, NO_ANSWER = "busy", "no_answer"


def responders_scenario(
    folder: Path, name: str, numbers: Sequence[tuple[str, Respond]], *, otherwise: Respond = BUSY
) -> Path:
    """Many phones behind one trunk (on-call phones, emergency contacts, 120): each call
    is told apart by the number in its Request-URI and does what `numbers` says for it;
    any other number does `otherwise`."""
    folder.mkdir(parents=True, exist_ok=True)
    ringing = """<send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port]>
Content-Length: 0

]]></send>"""
    final = """<send><![CDATA[
SIP/2.0 {code}
[last_Via:]
[last_From:]
[last_To:];tag=[call_number]
[last_Call-ID:]
CSeq: [cseq] INVITE
Content-Length: 0

]]></send>"""
    ok = f"""<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

{_SDP}]]></send>"""
    end = 99_999

    def branch(k: int, respond: Respond) -> str:
        base = 1000 * (k + 1)
        if respond == BUSY:
            body = final.format(code="486 Busy Here") + '\n<recv request="ACK"/>'
        elif respond == NO_ANSWER:
            body = (
                f'{ringing}\n<recv request="CANCEL" timeout="600000"/>\n{_BYE_OK}\n'
                + final.format(code="487 Request Terminated")
                + '\n<recv request="ACK"/>'
            )
        else:
            assert not isinstance(respond, str), respond
            body = (
                f'{ringing}\n<pause milliseconds="300"/>\n{ok}\n<recv request="ACK" crlf="true"/>\n'
                + _presses(folder, respond, then_wait_ms=600_000, base=base, prefix=f"n{k}_")
            )
        return f'<label id="{base}"/>\n{body}\n<nop next="{end}"/>'

    rows = [*numbers, ("", otherwise)]
    match = "\n".join(
        f'<ereg regexp="sip:{re.escape(number)}@" search_in="msg" check_it="false" '
        f'assign_to="n{k}"/>'
        for k, (number, _) in enumerate(numbers)
    )
    jumps = "\n".join(f'<nop next="{1000 * (k + 1)}" test="n{k}"/>' for k in range(len(numbers)))
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<scenario name="{name}">
<recv request="INVITE" crlf="true"><action>
{match}
</action></recv>
{jumps}
<nop next="{1000 * len(rows)}"/>
{"".join(branch(k, respond) + chr(10) for k, (_, respond) in enumerate(rows))}
<label id="{end}"/>
</scenario>
"""
    path = folder / f"{name}.xml"
    path.write_text(xml)
    return path


@dataclass
class SippRun:
    """One SIPp process."""

    process: asyncio.subprocess.Process
    log: Path
    #: SIPp's message trace (`trace=True`): every message with the time it was sent
    trace: Path

    async def wait(self, within: float = 180.0) -> int:
        """Its exit code (0: every call went through its scenario)."""
        return await asyncio.wait_for(self.process.wait(), within)

    async def stop(self) -> None:
        """End it now."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
                self.process.send_signal(signal.SIGUSR1)  # SIPp: quit at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

    def stats(self) -> str:
        """What SIPp wrote (errors, the final statistics)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def sipp(
    scenario: Path,
    *,
    port: int,
    target: str | None = None,
    callers: Sequence[str] = (),
    calls: int = 1,
    rate: float = 1.0,
    service: str = "12349",
    limit: int = 200,
    trace: bool = False,
) -> SippRun:
    """Start SIPp: a UAC calling `target` (one call per caller, their numbers as caller
    IDs) or, without a target, a UAS answering on `port` until stopped."""
    folder = scenario.parent
    log = folder / f"{scenario.stem}-{port}.log"
    messages = folder / f"{scenario.stem}-{port}.messages"
    argv = [
        "sipp",
        "-sf",
        str(scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mi",
        "127.0.0.1",
        "-mp",
        str(free_udp_pair()),
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(log),
        "-timeout_error",
        "-recv_timeout",
        "600000",
        "-max_recv_loops",
        "100000",
        "-l",
        str(limit),
    ]
    if trace:
        argv += ["-trace_msg", "-message_file", str(messages)]
    if target is not None:
        inf = folder / f"{scenario.stem}-{port}.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(f"{c};\n" for c in callers))
        argv += ["-inf", str(inf), "-s", service, "-m", str(calls or len(callers))]
        argv += ["-r", str(rate), "-rp", "1000", target]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=folder,
    )
    run = SippRun(proc, log, messages)
    STARTED.append(run)
    return run


#: every SIPp started in this worker; `stop_leftover_sipp` ends, after each test, the ones a
#: test left running (a phone still waiting when an assertion failed or the test was done):
#: otherwise the process outlives its event loop and the next test fails on the warning
STARTED: list[SippRun] = []


async def stop_leftover_sipp() -> None:
    """Stop and reap every SIPp this worker started that is still running."""
    while STARTED:
        await STARTED.pop().stop()


# -- Yijing -------------------------------------------------------------------------------
@dataclass
class Yijing:
    """`yijing run` with the asterisk backend, in a process of its own."""

    pbx: Pbx
    folder: Path
    db_url: str
    settings: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """The console's address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Its stderr (the log) and stdout."""
        return self.folder / "yijing.log"

    def env(self) -> dict[str, str]:
        """The environment it runs with: only variables it knows (it refuses others)."""
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("YIJING_")}
        env.update(
            YIJING_ENVIRONMENT="test",
            YIJING_DATA_DIR=str(self.folder / "data"),
            YIJING_DATABASE_URL=self.db_url,
            YIJING_DEMO_PASSWORD=DEMO_PASSWORD,
            YIJING_SECRET_KEY="tier-secret-key-not-for-production",
            YIJING_PORT=str(self.port),
            YIJING_TELEPHONY="asterisk",
            YIJING_ASTERISK_PORT=str(self.pbx.ami_port),
            YIJING_ASTERISK_SECRET=AMI_SECRET,
            YIJING_ASTERISK_DIAL_TEMPLATE="Local/{number}@yijing-dialout",
            YIJING_ASTERISK_AGI_PORT=str(self.pbx.agi_port),
            YIJING_ASTERISK_SOUNDS_DIR=str(self.pbx.prompts_dir),
            YIJING_PROMPTS_DIR=str(self.pbx.prompts_dir),
            YIJING_ASTERISK_PING_INTERVAL_S="2",
            YIJING_ASTERISK_ACTION_TIMEOUT_S="5",
            # the desk is open all day: the tier runs on the real clock at any hour, and
            # out of hours a routine caller is told when it opens instead of queueing
            YIJING_DESK_OPEN="00:00",
            YIJING_DESK_CLOSE="23:59:59.999999",
            # the tier's resident phones answer the survey: the call telling the resident
            # who accepted (tests/dispatch/test_told.py, on the memory PBX) stays off
            YIJING_TELL_RESIDENT="false",
        )
        env.update(self.settings)
        return env

    async def start(self) -> None:
        """Start it and wait until /healthz says the database, the AMI link and the
        scheduler are up."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.to_thread(self._spawn)
        if self.session is None:
            self.session = aiohttp.ClientSession()
        self.tokens.clear()

        async def healthy() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"yijing exited ({self.process.returncode}): {self.tail()}")
            try:
                async with self.session.get(self.url + "/healthz") as resp:  # type: ignore[union-attr]
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(healthy, within=60, what="yijing healthy")

    def _spawn(self) -> subprocess.Popen[bytes]:
        code = "from operator_console.cli import main; raise SystemExit(main())"
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-c", code, "run"],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def tail(self, lines: int = 30) -> str:
        """The end of its log."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    async def stop(self) -> None:
        """A normal stop (SIGINT, as Ctrl-C)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    async def close(self) -> None:
        """Stop it and close the HTTP session."""
        await self.stop()
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def login(self, username: str) -> str:
        """A bearer token."""
        assert self.session is not None
        async with self.session.post(
            self.url + "/api/v1/login", json={"username": username, "password": DEMO_PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
            token: str = (await resp.json())["token"]
        self.tokens[username] = token
        return token

    async def api(
        self,
        method: str,
        path: str,
        *,
        as_user: str = "operator",
        expect: int | None = 200,
        **kwargs: Any,
    ) -> Any:
        """A request to /api/v1 as a user; checks the status when `expect` is given."""
        assert self.session is not None
        if as_user not in self.tokens:
            await self.login(as_user)
        headers = {"Authorization": f"Bearer {self.tokens[as_user]}"}
        async with self.session.request(
            method, self.url + "/api/v1" + path, headers=headers, **kwargs
        ) as resp:
            body = await (resp.json() if resp.content_type == "application/json" else resp.text())
            if expect is not None:
                assert resp.status == expect, (method, path, resp.status, body)
            return body

    async def events(self, since: int = 0) -> list[dict[str, Any]]:
        """The event log after `since`, every page of it."""
        out: list[dict[str, Any]] = []
        while True:
            page = await self.api("GET", f"/events?since={since}", as_user="supervisor")
            out += page
            if len(page) < 1000:
                return out
            since = int(page[-1]["seq"])

    @contextlib.asynccontextmanager
    async def stream(self, as_user: str = "operator") -> AsyncIterator[list[tuple[float, Any]]]:
        """The WebSocket feed, as (arrival time.time(), event) pairs."""
        assert self.session is not None
        if as_user not in self.tokens:
            await self.login(as_user)
        received: list[tuple[float, Any]] = []
        ws = await self.session.ws_connect(
            self.url + "/api/v1/ws", headers={"Authorization": f"Bearer {self.tokens[as_user]}"}
        )

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    received.append((time.time(), json.loads(msg.data)))

        reader = asyncio.create_task(read())
        try:
            yield received
        finally:
            await ws.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def eventually(
    check: Callable[[], Awaitable[Any]],
    *,
    within: float = 30.0,
    what: str = "",
    interval: float = 0.1,
) -> Any:
    """Poll a condition until it holds (no fixed waits)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within}s: {what or check}")
        await asyncio.sleep(interval)
