"""Flows as data: YAML flow files, checked on load, and a reloadable `FlowLibrary`.

A flow file looks like this (the built-ins under ``ivr/flows/*.yaml`` are examples)::

    name: survey
    start: intro
    steps:
      intro: {say: survey.intro, next: menu}
      menu:
        ask: survey.menu
        choices: {1: r1, 2: r2, 3: r3, 9: intro}
        on_fail: no_input          # after `retries` (default 2) no input / wrong keys
        timeout_s: 10              # optional; also retries, max_visits, repeat, store
      r1: {set: {rating: satisfied}, next: thanks}
      pick: {branch: rating, cases: {satisfied: thanks}, default: thanks}
      queue: {transfer: operators, outcome: transfer}
      thanks: {hangup: rated, prompt: survey.thanks}

Every error names the file, the flow and the step. A library reload is all or nothing:
when any file is wrong, the library keeps serving the last good set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ivr.flow import (
    Ask,
    Branch,
    Flow,
    FlowError,
    Hangup,
    Say,
    Set,
    Step,
    Transfer,
    outcomes,
    validate,
)
from ivr.prompts import CATALOGS

log = logging.getLogger(__name__)

KINDS = ("say", "ask", "set", "branch", "transfer", "hangup")
_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "say": {"next": str, "slow": bool},
    "ask": {
        "choices": dict,
        "on_fail": str,
        "timeout_s": (int, float),
        "retries": int,
        "max_visits": int,
        "repeat": (str, int),
        "store": str,
    },
    "set": {"next": str},
    "branch": {"cases": dict, "default": str},
    "transfer": {"outcome": str},
    "hangup": {"prompt": str},
}
_REQUIRED = {
    "say": ("next",),
    "ask": ("choices", "on_fail"),
    "set": ("next",),
    "branch": ("default",),
    "transfer": (),
    "hangup": (),
}


class FlowLoadError(FlowError):
    """A flow file cannot be used; says which file, flow and step."""

    def __init__(self, path: Path | str, flow: str, step: str, reason: str) -> None:
        super().__init__(flow, step, reason)
        self.path = str(path)
        self.args = (f"{path}: {self.args[0]}",)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads yes/no/on/off as booleans; in a flow they are names, so keep them text."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_flow(
    text: str,
    *,
    source: str = "<text>",
    catalogs: Mapping[str, Mapping[str, str]] | None = None,
) -> Flow:
    """Read and validate one flow from YAML text; raise `FlowLoadError` when it is wrong."""
    fallback = Path(source).stem if source != "<text>" else "?"
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise FlowLoadError(source, fallback, "-", f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FlowLoadError(source, fallback, "-", "a flow file must be a mapping")
    name = data.get("name", fallback)
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise FlowLoadError(source, str(name), "-", "name must be lower_snake_case")
    unknown = set(data) - {"name", "start", "steps", "description"}
    if unknown:
        raise FlowLoadError(source, name, "-", f"unknown keys {sorted(unknown)}")
    steps_data = data.get("steps")
    if not isinstance(steps_data, dict) or not steps_data:
        raise FlowLoadError(source, name, "-", "steps must be a non-empty mapping")
    start = data.get("start", next(iter(steps_data)))
    steps: dict[str, Step] = {}
    for step_name, raw in steps_data.items():
        steps[str(step_name)] = _step(source, name, str(step_name), raw)
    flow = Flow(name=name, start=str(start), steps=steps)
    try:
        validate(flow, catalogs=CATALOGS if catalogs is None else catalogs)
    except FlowError as exc:
        raise FlowLoadError(source, exc.flow, exc.step, exc.reason) from None
    return flow


def load_flow(path: Path, *, catalogs: Mapping[str, Mapping[str, str]] | None = None) -> Flow:
    """Read and validate one flow file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowLoadError(path, path.stem, "-", f"cannot read: {exc}") from exc
    flow = parse_flow(text, source=str(path), catalogs=catalogs)
    if flow.name != path.stem:
        raise FlowLoadError(path, flow.name, "-", f"file must be named {flow.name}.yaml")
    return flow


def load_folder(
    folder: Path, *, catalogs: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, Flow]:
    """Every ``*.yaml`` flow in a folder, by name; the first wrong file raises."""
    if not folder.is_dir():
        raise FlowLoadError(folder, "-", "-", "flow folder does not exist")
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    return {flow.name: flow for flow in (load_flow(p, catalogs=catalogs) for p in files)}


def check_folder(folder: Path | str) -> list[str]:
    """Every problem in a flow folder, one line per bad file (for an admin's check command)."""
    path = Path(folder)
    if not path.is_dir():
        return [f"{path}: flow folder does not exist"]
    problems = []
    for file in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
        try:
            load_flow(file)
        except FlowLoadError as exc:
            problems.append(str(exc))
    return problems


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise TypeError(value)
    return str(value)


def _step(source: str, flow: str, name: str, raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise FlowLoadError(source, flow, name, "a step must be a mapping")
    kinds = [k for k in raw if k in KINDS]
    if len(kinds) != 1:
        given = ", ".join(map(str, raw)) or "nothing"
        raise FlowLoadError(
            source, flow, name, f"unknown step kind (has {given}; one of {', '.join(KINDS)})"
        )
    kind = kinds[0]
    fields = _FIELDS[kind]
    for key, value in raw.items():
        if key == kind:
            continue
        if key not in fields:
            raise FlowLoadError(source, flow, name, f"{kind} step has unknown field {key!r}")
        if not isinstance(value, fields[key]) or (
            isinstance(value, bool) and fields[key] is not bool
        ):
            raise FlowLoadError(source, flow, name, f"field {key!r} has the wrong type")
    for key in _REQUIRED[kind]:
        if key not in raw:
            raise FlowLoadError(source, flow, name, f"{kind} step needs {key!r}")
    try:
        return _build(kind, raw)
    except TypeError:
        raise FlowLoadError(source, flow, name, f"{kind} step has a wrong value") from None


def _build(kind: str, raw: dict[str, Any]) -> Step:
    head = raw[kind]
    match kind:
        case "say":
            return Say(_scalar(head), next=_scalar(raw["next"]), slow=raw.get("slow") is True)
        case "ask":
            extra: dict[str, Any] = {
                k: raw[k] for k in ("timeout_s", "retries", "max_visits") if k in raw
            }
            if raw.get("repeat") is not None:
                extra["repeat"] = _scalar(raw["repeat"])
            if raw.get("store") is not None:
                extra["store"] = _scalar(raw["store"])
            choices = {_scalar(k): _scalar(v) for k, v in raw["choices"].items()}
            return Ask(_scalar(head), choices=choices, on_fail=_scalar(raw["on_fail"]), **extra)
        case "set":
            if not isinstance(head, dict) or len(head) != 1:
                raise TypeError(head)
            ((var, value),) = head.items()
            return Set(_scalar(var), _scalar(value), next=_scalar(raw["next"]))
        case "branch":
            cases = {_scalar(k): _scalar(v) for k, v in (raw.get("cases") or {}).items()}
            return Branch(_scalar(head), cases=cases, default=_scalar(raw["default"]))
        case "transfer":
            return Transfer(_scalar(head), outcome=_scalar(raw.get("outcome", "transfer")))
        case _:
            prompt = raw.get("prompt")
            return Hangup(_scalar(head), prompt=_scalar(prompt) if prompt is not None else None)


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What a successful reload changed."""

    folder: str
    loaded: tuple[str, ...]
    overridden: tuple[str, ...]
    added: tuple[str, ...]


class FlowLibrary:
    """The flows in use: the built-ins, overridden or extended by a folder of YAML files.

    `reload` reads the folder again; when anything in it is wrong it raises and the
    library keeps the last good set. A flow that dispatch relies on (see
    `ivr.flows.OUTCOMES`) may only finish with the outcomes dispatch knows.
    """

    def __init__(
        self,
        folder: Path | str | None = None,
        *,
        builtin: Mapping[str, Flow] | None = None,
        contract: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        from ivr import flows

        self.folder = Path(folder) if folder is not None else None
        self._builtin = dict(flows.BUILTIN if builtin is None else builtin)
        self._contract = dict(flows.OUTCOMES if contract is None else contract)
        self._flows: dict[str, Flow] = dict(self._builtin)
        self.last_error: str | None = None
        if self.folder is not None and self.folder.exists():
            try:
                self.reload()
            except FlowLoadError:
                log.warning("flow folder %s not loaded, using built-in flows", self.folder)

    def get(self, name: str) -> Flow:
        """The flow called `name`; `KeyError` when there is none."""
        return self._flows[name]

    def __getitem__(self, name: str) -> Flow:
        return self._flows[name]

    def __contains__(self, name: object) -> bool:
        return name in self._flows

    def names(self) -> list[str]:
        """Names of every flow in use, sorted."""
        return sorted(self._flows)

    def reload(self) -> ReloadReport:
        """Load the folder again; on any error raise `FlowLoadError` and keep the last good set."""
        if self.folder is None:
            return ReloadReport("", (), (), ())
        try:
            loaded = load_folder(self.folder)
            for name, flow in loaded.items():
                allowed = self._contract.get(name)
                extra = outcomes(flow) - allowed if allowed is not None else set()
                if extra:
                    raise FlowLoadError(
                        self.folder / f"{name}.yaml",
                        name,
                        "-",
                        f"outcomes {sorted(extra)} are not in the contract {sorted(allowed or ())}",
                    )
        except FlowLoadError as exc:
            self.last_error = str(exc)
            log.warning("flow reload from %s failed: %s", self.folder, exc)
            raise
        self._flows = {**self._builtin, **loaded}
        self.last_error = None
        report = ReloadReport(
            folder=str(self.folder),
            loaded=tuple(sorted(loaded)),
            overridden=tuple(sorted(n for n in loaded if n in self._builtin)),
            added=tuple(sorted(n for n in loaded if n not in self._builtin)),
        )
        log.info("flows reloaded from %s: %d files", self.folder, len(loaded))
        return report
