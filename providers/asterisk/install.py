"""Writes Yijing's part of an Asterisk configuration, the way INSTALL.md describes it.

One function for both readers of the install notes: an administrator (``yijing
asterisk-conf /etc/asterisk``, filled from the same ``YIJING_`` settings the service runs
with, so the two sides cannot disagree) and the real-PBX test tier, which builds its
Asterisk's configuration with it. What INSTALL.md tells is what the tests run.

It writes, into the Asterisk configuration folder:

- ``extensions_yijing.conf``: the shipped dialplan (``conf/extensions.conf``) with its
  ``[globals]`` filled in (FastAGI address, hotline caller ID, how operators and
  merchants are dialled);
- ``manager_yijing.conf``: the shipped AMI snippet (``conf/manager.conf``) with the AMI
  address, user and secret;
- ``musiconhold_yijing.conf``: the ``yijing-hold`` class a held caller hears;
- ``rtp_yijing.conf``: a wide RTP port range (surges);

and links, never copies, the prompt build folder into Asterisk's sounds as ``yijing``:
names, addresses and order details are synthesised at call time into that folder
(``dyn/``), so a copy taken at install time hangs up every registered resident at the
greeting. The hold prompt is linked into the hold class's folder the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: what an administrator adds to the stock files to load Yijing's (INSTALL.md)
INCLUDES = {
    "extensions.conf": "#include extensions_yijing.conf",
    "manager.conf": "#include manager_yijing.conf",
    "musiconhold.conf": "#include musiconhold_yijing.conf",
    "rtp.conf": "#include rtp_yijing.conf",
}


@dataclass(frozen=True, slots=True)
class InstallOptions:
    """The values the shipped files leave to the site."""

    ami_secret: str
    ami_username: str = "yijing"
    ami_bindaddr: str = "127.0.0.1"
    ami_port: int = 5038
    #: where Yijing listens for FastAGI, as Asterisk reaches it
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    #: the number merchants see instead of a resident's
    hotline_cid: str = "12349"
    #: operators are ``<tech>/<user id>`` endpoints
    operator_tech: str = "PJSIP"
    #: ``[yijing-dialout]`` dials ``<tech>/<number>@<trunk>``
    dialout_tech: str = "PJSIP"
    trunk: str = "trunk"
    #: the music-on-hold class callers hear while they wait for an operator
    wait_class: str = "default"
    rtp_start: int = 10000
    rtp_end: int = 20000


def shipped(name: str) -> str:
    """A file of ``providers/asterisk/conf`` as shipped."""
    return (resources.files("providers.asterisk") / "conf" / name).read_text(encoding="utf-8")


def _set_globals(dialplan: str, values: Mapping[str, str]) -> str:
    head, sep, rest = dialplan.partition("[globals]\n")
    if not sep:
        raise ValueError("the shipped dialplan has no [globals] section")
    body, nxt, tail = rest.partition("\n[")
    for name, value in values.items():
        body, count = re.subn(rf"(?m)^{name}=.*$", f"{name}={value}", body)
        if count != 1:
            raise ValueError(f"the shipped dialplan's [globals] has no single {name}")
    return head + sep + body + nxt + tail


def render(options: InstallOptions, *, hold_dir: Path) -> dict[str, str]:
    """The configuration files, by name."""
    for label, value in (
        ("secret", options.ami_secret),
        ("user", options.ami_username),
        ("trunk", options.trunk),
        ("operator technology", options.operator_tech),
        ("dial-out technology", options.dialout_tech),
    ):
        if not re.fullmatch(r"[A-Za-z0-9_.@:+/-]{1,128}", value):
            raise ValueError(f"unusable {label} for an Asterisk configuration file")
    dialplan = _set_globals(
        shipped("extensions.conf"),
        {
            "YIJING_AGI": f"agi://{options.agi_host}:{options.agi_port}/yijing",
            "YIJING_HOTLINE_CID": options.hotline_cid,
            "YIJING_OPERATOR_TECH": options.operator_tech,
            "YIJING_DIALOUT_TECH": options.dialout_tech,
            "YIJING_TRUNK": options.trunk,
            "YIJING_WAIT_CLASS": options.wait_class,
        },
    )
    manager = shipped("manager.conf")
    manager = re.sub(r"(?m)^port = \d+", f"port = {options.ami_port}", manager)
    manager = re.sub(r"(?m)^bindaddr = \S+", f"bindaddr = {options.ami_bindaddr}", manager)
    manager = re.sub(r"(?m)^\[yijing\]", f"[{options.ami_username}]", manager)
    manager = re.sub(r"(?m)^secret = \S+", f"secret = {options.ami_secret}", manager)
    moh = (
        "; Yijing: what a caller on hold hears (the desk's hold): the hold prompt, then music\n"
        "[yijing-hold]\n"
        "mode = files\n"
        f"directory = {hold_dir}\n"
        "sort = alpha\n"
    )
    rtp = f"[general]\nrtpstart = {options.rtp_start}\nrtpend = {options.rtp_end}\n"
    return {
        "extensions_yijing.conf": dialplan,
        "manager_yijing.conf": manager,
        "musiconhold_yijing.conf": moh,
        "rtp_yijing.conf": rtp,
    }


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a link: move it away first")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def install(
    options: InstallOptions,
    *,
    etc_dir: Path,
    sounds_dir: Path,
    prompts_dir: Path,
    hold_dir: Path | None = None,
) -> list[Path]:
    """Write the files into `etc_dir` and link the prompt build into `sounds_dir`."""
    hold = hold_dir or sounds_dir / "yijing-hold"
    written = []
    etc_dir.mkdir(parents=True, exist_ok=True)
    for name, text in render(options, hold_dir=hold).items():
        path = etc_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    prompts = prompts_dir.resolve()
    _link(sounds_dir / "yijing", prompts)
    hold.mkdir(parents=True, exist_ok=True)
    _link(hold / "00-desk.on_hold.wav", prompts / "zh-CN" / "desk.on_hold.wav")
    written += [sounds_dir / "yijing", hold / "00-desk.on_hold.wav"]
    return written
