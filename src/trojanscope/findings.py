"""The one data model: every check yields Findings, every command returns a Report.

Rules are declared constants (a `Rule` registers itself in `RULES` when created), so a rule id
used anywhere is also documented, has a default severity and a remedy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from . import __version__
from .results import Results, for_command


class Severity(enum.IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str | Severity) -> Severity:
        if isinstance(text, Severity):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Rule:
    """A stable rule id with its default severity, a one-line title and a remedy."""

    id: str
    severity: Severity
    title: str
    remedy: str

    def __post_init__(self) -> None:
        known = RULES.get(self.id)
        if known is not None and known != self:
            raise ValueError(f"rule {self.id} declared twice with different contents")
        RULES[self.id] = self

    def finding(
        self,
        message: str,
        location: Location,
        evidence: Mapping[str, Any] | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        return Finding(
            rule=self.id,
            severity=self.severity if severity is None else severity,
            message=message,
            location=location,
            evidence=MappingProxyType(dict(evidence or {})),
            remedy=self.remedy,
        )


RULES: dict[str, Rule] = {}


def all_rules() -> dict[str, Rule]:
    """Every rule, the modules that declare them imported first (scan imports some lazily;
    the vet, model and signing rules live in modules that need no extra)."""
    import importlib
    import pkgutil

    from . import artifacts
    from .attacks import rules as _attacks  # noqa: F401
    from .data import rules as _data  # noqa: F401
    from .model import rules as _model  # noqa: F401
    from .provenance import integrity as _integrity  # noqa: F401

    for module in pkgutil.iter_modules(artifacts.__path__):
        importlib.import_module(f"{artifacts.__name__}.{module.name}")
    return RULES


@dataclass(frozen=True, order=True)
class Location:
    """Where a finding is: a file, the chain of members inside archives, and an offset."""

    path: str
    member: tuple[str, ...] = ()
    offset: int | None = None

    def inside(self, member: str) -> Location:
        return Location(self.path, self.member + (member,))

    def at(self, offset: int | None) -> Location:
        return Location(self.path, self.member, offset)

    def __str__(self) -> str:
        text = "!".join((self.path,) + self.member)
        return text if self.offset is None else f"{text}@{self.offset}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "member": list(self.member), "offset": self.offset}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Location:
        return cls(data["path"], tuple(data.get("member", ())), data.get("offset"))


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    location: Location
    evidence: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    remedy: str = ""

    def sort_key(self) -> tuple:
        return (self.location.path, self.location.member, self.location.offset or 0,
                -int(self.severity), self.rule, self.message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": str(self.severity),
            "message": self.message,
            "location": self.location.to_dict(),
            "evidence": dict(self.evidence),
            "remedy": self.remedy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(data["rule"], Severity.parse(data["severity"]), data["message"],
                   Location.from_dict(data["location"]),
                   MappingProxyType(dict(data.get("evidence", {}))), data.get("remedy", ""))


@dataclass(frozen=True)
class ScanError:
    """Something that could not be examined at all (missing path, unreadable file)."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@dataclass(frozen=True)
class Report:
    """What a command examined and found. Findings are sorted, so output is deterministic."""

    command: str
    targets: tuple[str, ...]
    findings: tuple[Finding, ...] = ()
    errors: tuple[ScanError, ...] = ()
    results: Results = field(default_factory=Results)  # the command's own type (results.py)
    timings: Mapping[str, float] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    version: str = __version__  # the one place it is set

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(sorted(self.findings, key=Finding.sort_key)))

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def at_or_above(self, threshold: Severity) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity >= threshold)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """The inverse of the JSON form (`render.json.report_to_dict`): how a report made in a
        child process (which loaded an untrusted model) comes back, as data, never a pickle."""
        return cls(command=data["command"], version=data["tool"]["version"],
                   targets=tuple(data["targets"]),
                   findings=tuple(Finding.from_dict(f) for f in data["findings"]),
                   errors=tuple(ScanError(e["path"], e["message"]) for e in data["errors"]),
                   results=for_command(data["command"]).from_dict(data["results"])
                   if data["results"] else Results(),
                   timings=data["timings"], config=data["config"])

    def exit_code(self, fail_on: Severity = Severity.HIGH) -> int:
        """0: nothing at or above `fail_on`; 1: findings; 2: something could not be examined."""
        if self.at_or_above(fail_on):
            return 1
        return 2 if self.errors else 0


def clipped(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with "..." when longer (for messages and evidence)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."
