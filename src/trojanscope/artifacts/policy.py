"""The globals policy: which (module, name) pairs a pickle may import.

Policy is data (the tables of globals_policy.py beside this file), passed in explicitly and
extended by users with a TOML file of the same shape. Classification never imports anything it
names.
"""

from __future__ import annotations

import _compat_pickle
import functools
import re
from dataclasses import dataclass, field
from fnmatch import translate
from pathlib import Path
from typing import Mapping, Sequence

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
    exempt: Table = field(default_factory=dict)  # packaged only: see globals_policy.py
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_verdicts", {})  # memo of decisions, per policy
        object.__setattr__(self, "_indexes", {})  # each table's patterns, compiled on first use

    def _index(self, table: str) -> _TableIndex:
        index = self._indexes.get(table)
        if index is None:
            index = self._indexes[table] = _TableIndex(getattr(self, table))
        return index

    @classmethod
    def default(cls) -> GlobalsPolicy:
        return _packaged()

    @classmethod
    def from_toml(cls, text: str, source: str) -> GlobalsPolicy:
        import tomllib  # users' allowlists only: the packaged policy is Python (start-up)

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_tables(data, source)

    @classmethod
    def from_tables(cls, data: Mapping, source: str) -> GlobalsPolicy:
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

    def digest(self) -> str:
        """A SHA-256 of the policy's tables: with the tool's version, it says whether a result
        kept from before (the service's, a cache's) was made under the same rules."""
        import hashlib
        import json

        tables = {key: {module: sorted(names) for module, names in getattr(self, key).items()}
                  for key in ("allow", "critical", "nested_loaders", "exempt")}
        return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()

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
        return any(self._index("nested_loaders").matches(m, n, submodules=False)
                   for m, n in {(module, name), python2_name(module, name)})

    def _classify_one(self, module: str, name: str) -> Verdict:
        parts = name.split(".")
        if any(p.startswith("__") and p.endswith("__") and len(p) > 4 for p in parts[:-1]) or (
                len(parts) > 1 and parts[-1].startswith("__") and parts[-1] != "__newobj__"):
            return Verdict(Severity.CRITICAL, DUNDER_REASON, f"{module}.{name}")
        if len(parts) == 1 and self._index("exempt").matches(module, name, submodules=False):
            return Verdict(None, "allowed", f"{module}.{name}")
        # A dotted name is an attribute walk from the module (protocol 4+): "pathlib" + "os.system"
        # reaches os.system. Judge every (module, name) that the walk could stand for.
        for mod, attr in _walk_candidates(module, parts):
            if self._index("critical").matches(mod, attr, submodules=True):
                return Verdict(Severity.CRITICAL, "a known code-execution gadget",
                               f"{mod}.{attr}")
        if len(parts) == 1 and self._index("allow").matches(module, name, submodules=False):
            return Verdict(None, "allowed", f"{module}.{name}")
        if len(parts) > 1 and any(name in names for names in
                                  self._index("allow").names_for(module, submodules=False)):
            return Verdict(None, "allowed", f"{module}.{name}")
        return Verdict(Severity.HIGH, f"imports from module {module!r}, which the policy "
                       "does not allow", f"{module}.{name}")


@functools.lru_cache(maxsize=1)
def _packaged() -> GlobalsPolicy:
    from . import globals_policy as packaged

    return GlobalsPolicy.from_tables(
        {"allow": packaged.ALLOW, "critical": packaged.CRITICAL,
         "nested_loaders": packaged.NESTED_LOADERS, "exempt": packaged.EXEMPT},
        "packaged policy")


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


_WILD = re.compile(r"[*?[]")


class _TableIndex:
    """A table's patterns, matched as fnmatch would but without a regex per lookup: exact module
    keys by dict, `prefix.*` keys by their dotted prefixes, and each key's names by one test."""

    def __init__(self, table: Table) -> None:
        self.exact: dict[str, list[tuple[str, ...]]] = {}
        self.prefix: dict[str, list[tuple[str, ...]]] = {}  # "a.b.*" as "a.b"
        self.other: list[tuple[re.Pattern, re.Pattern, tuple[str, ...]]] = []
        for pattern, names in table.items():
            names = tuple(names)
            if not _WILD.search(pattern):
                self.exact.setdefault(pattern, []).append(names)
            elif pattern.endswith(".*") and not _WILD.search(pattern[:-2]):
                self.prefix.setdefault(pattern[:-2], []).append(names)
            else:
                self.other.append((re.compile(translate(pattern)),
                                   re.compile(translate(pattern + ".*")), names))

    def names_for(self, module: str, *, submodules: bool) -> list[tuple[str, ...]]:
        """The name patterns of every key that matches `module` (a key's submodules too when
        `submodules`)."""
        found = list(self.exact.get(module, ()))
        parts = module.split(".")
        for i in range(1, len(parts)):
            head = ".".join(parts[:i])
            found += self.prefix.get(head, ())  # "a.*" matches "a.anything"
            if submodules:
                found += self.exact.get(head, ())
        for whole, below, names in self.other:
            if whole.match(module) or (submodules and below.match(module)):
                found.append(names)
        return found

    def matches(self, module: str, name: str, *, submodules: bool) -> bool:
        return any(_name_test(names)(name) for names in self.names_for(module,
                                                                        submodules=submodules))


@functools.lru_cache(maxsize=None)
def _name_test(names: tuple[str, ...]):
    """One test for a key's name patterns: exact names by set, the patterns by one regex."""
    if "*" in names:
        return lambda name: True
    exact = frozenset(n for n in names if not _WILD.search(n))
    wild = [n for n in names if _WILD.search(n)]
    if not wild:
        return exact.__contains__
    regex = re.compile("|".join(translate(n) for n in wild))
    return lambda name: name in exact or regex.match(name) is not None


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
