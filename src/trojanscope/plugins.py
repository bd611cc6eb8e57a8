"""The one way to register a plugin: a named function or class, with its metadata, added by a
decorator to the registry of its kind (detectors, triggers, repair methods, payloads).

A registry reads like a mapping from name to plugin. Given a package, it imports every module
of that package the first time it is read, so a new plugin is a new module and no list is kept
by hand. Names are unique: registering one twice is a bug, and says so.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str, package: str | None = None, suffix: str = ""):
        self.kind = kind
        self.package = package  # its modules are imported when the registry is first read
        self.suffix = suffix    # only those whose name ends so (artifacts' *_format modules)
        self._plugins: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._loaded = package is None

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: register the function or class as `name`, with its metadata."""
        def add(plugin: T) -> T:
            if name in self._plugins and self._plugins[name] is not plugin:
                raise ValueError(f"two {self.kind}s named {name!r}")
            self._plugins[name] = plugin
            self._meta[name] = meta
            return plugin
        return add

    def add(self, name: str, plugin: T, **meta: Any) -> T:
        """Register a plugin that is not defined by a def or class (a lambda, a partial)."""
        return self.register(name, **meta)(plugin)

    def meta(self, name: str) -> dict[str, Any]:
        self._load()
        return self._meta[name]

    def choices(self) -> str:
        """The names, for help texts and error messages."""
        return ", ".join(self)

    def __getitem__(self, name: str) -> T:
        self._load()
        try:
            return self._plugins[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}: one of {self.choices()}") from None

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(self._plugins)

    def __len__(self) -> int:
        self._load()
        return len(self._plugins)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.endswith(self.suffix):
                importlib.import_module(f"{self.package}.{module.name}")
