"""The globals policy: which (module, name) pairs a pickle may import.

Policy is data (globals_policy.toml beside this file), passed in explicitly and extended by users
with a file of the same shape. Classification never imports anything it names.
"""

from __future__ import annotations

import _compat_pickle
import functools
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Mapping, Sequence

import tomllib

from ..findings import Severity

Table = Mapping[str, Sequence[str]]

DUNDER_REASON = "walks through a dunder attribute, a classic sandbox escape"


@dataclass(frozen=True)
class Verdict:
    severity: Severity | None  # None: allowed
    reason: str
    matched: str = ""  # the (module, name) that decided, as "module.name"

    @property
    def allowed(self) -> bool:
        return self.severity is None


@dataclass(frozen=True)
class GlobalsPolicy:
    allow: Table = field(default_factory=dict)
    critical: Table = field(default_factory=dict)
    nested_loaders: Table = field(default_factory=dict)
    exempt: Table = field(default_factory=dict)  # packaged only: see globals_policy.toml
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_verdicts", {})  # memo of decisions, per policy

    @classmethod
    def default(cls) -> GlobalsPolicy:
        return _packaged()

    @classmethod
    def from_toml(cls, text: str, source: str) -> GlobalsPolicy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: not valid TOML: {exc}") from None
        tables = {}
        for key in ("allow", "critical", "nested_loaders", "exempt"):
            tables[key] = _check_table(data.get(key, {}), f"{source}: [{key}]")
        unknown = set(data) - set(tables)
        if unknown:
            raise PolicyError(f"{source}: unknown tables {sorted(unknown)} (expected allow, "
                              "critical, nested_loaders, exempt)")
        return cls(sources=(source,), **tables)

    def extended(self, path: str | Path) -> GlobalsPolicy:
        """This policy plus the [allow] (and [critical]) entries of a user's TOML file."""
        path = Path(path)
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{path}: cannot read the policy file: {exc}") from None
        extra = GlobalsPolicy.from_toml(text, str(path))
        if extra.exempt:
            raise PolicyError(f"{path}: [exempt] is for the packaged policy only; an allowlist "
                              "cannot lift a critical verdict")
        return GlobalsPolicy(
            allow=_merge(self.allow, extra.allow),
            critical=_merge(self.critical, extra.critical),
            nested_loaders=_merge(self.nested_loaders, extra.nested_loaders),
            exempt=self.exempt, sources=self.sources + extra.sources,
        )

    def classify(self, module: str, name: str) -> Verdict:
        """Decide on one imported global, as the unpickler would resolve it."""
        verdict = self._verdicts.get((module, name))
        if verdict is None:
            verdict = self._verdicts[(module, name)] = self._classify(module, name)
        return verdict

    def _classify(self, module: str, name: str) -> Verdict:
        fixed = python2_name(module, name)
        verdict = self._classify_one(*fixed)
        if fixed != (module, name):
            # Python 3 unpicklers map Python 2 names (fix_imports); judge the original too.
            original = self._classify_one(module, name)
            if original.severity == Severity.CRITICAL:
                return original
        return verdict

    def is_nested_loader(self, module: str, name: str) -> bool:
        key = ("nested", module, name)
        if key not in self._verdicts:
            self._verdicts[key] = self._is_nested_loader(module, name)
        return self._verdicts[key]

    def _is_nested_loader(self, module: str, name: str) -> bool:
        return any(_matches(self.nested_loaders, m, n, submodules=False)
                   for m, n in {(module, name), python2_name(module, name)})

    def _classify_one(self, module: str, name: str) -> Verdict:
        parts = name.split(".")
        if any(p.startswith("__") and p.endswith("__") and len(p) > 4 for p in parts[:-1]) or (
                len(parts) > 1 and parts[-1].startswith("__") and parts[-1] != "__newobj__"):
            return Verdict(Severity.CRITICAL, DUNDER_REASON, f"{module}.{name}")
        if len(parts) == 1 and _matches(self.exempt, module, name, submodules=False):
            return Verdict(None, "allowed", f"{module}.{name}")
        # A dotted name is an attribute walk from the module (protocol 4+): "pathlib" + "os.system"
        # reaches os.system. Judge every (module, name) that the walk could stand for.
        for mod, attr in _walk_candidates(module, parts):
            if _matches(self.critical, mod, attr, submodules=True):
                return Verdict(Severity.CRITICAL, "a known code-execution gadget",
                               f"{mod}.{attr}")
        if len(parts) == 1 and _matches(self.allow, module, name, submodules=False):
            return Verdict(None, "allowed", f"{module}.{name}")
        if len(parts) > 1 and name in _names_for(self.allow, module):
            return Verdict(None, "allowed", f"{module}.{name}")
        return Verdict(Severity.HIGH, f"imports from module {module!r}, which the policy "
                       "does not allow", f"{module}.{name}")


@functools.lru_cache(maxsize=1)
def _packaged() -> GlobalsPolicy:
    text = (Path(__file__).parent / "globals_policy.toml").read_text("utf-8")
    return GlobalsPolicy.from_toml(text, "packaged policy")


class PolicyError(ValueError):
    """A policy or allowlist file that cannot be used."""


def python2_name(module: str, name: str) -> tuple[str, str]:
    """The name Python 3's unpickler really imports for a Python 2 one (fix_imports)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _walk_candidates(module: str, parts: list[str]):
    yield module, ".".join(parts)
    for i in range(1, len(parts)):
        yield f"{module}.{'.'.join(parts[:i])}", parts[i]
        for j in range(i):
            yield ".".join(parts[j:i]), parts[i]
    if len(parts) > 1:
        yield module, parts[0]


def _matches(table: Table, module: str, name: str, *, submodules: bool) -> bool:
    for pattern, names in table.items():
        hit = fnmatchcase(module, pattern) or (submodules and fnmatchcase(module, pattern + ".*"))
        if hit and any(fnmatchcase(name, n) for n in names):
            return True
    return False


def _names_for(table: Table, module: str) -> set[str]:
    return {n for pattern, names in table.items() if fnmatchcase(module, pattern) for n in names}


def _check_table(value: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a table of module = [names]")
    out = {}
    for module, names in value.items():
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise PolicyError(f"{where}: {module!r} must map to a list of names")
        out[module] = tuple(names)
    return out


def _merge(a: Table, b: Table) -> dict[str, tuple[str, ...]]:
    out = {k: tuple(v) for k, v in a.items()}
    for k, v in b.items():
        out[k] = out.get(k, ()) + tuple(v)
    return out
