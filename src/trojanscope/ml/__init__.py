"""What vet, inspect, repair and diff share: one model adapter over every format
(`open_model`: scanned first, refused when scan finds code that would run), the architectures
of state-dict files and the zoo, and the child process model files are loaded in."""

from __future__ import annotations

from .gate import ModelError, UnsafeModelError

__all__ = ["Model", "ModelError", "UnsafeModelError", "open_model"]


def __getattr__(name: str):
    if name == "Model":  # imports NumPy: only when asked (the command line starts without it)
        from .model import Model

        return Model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_model(path, architecture=None, device=None) -> Model:  # noqa: F821
    from .formats import open_model as _open

    return _open(path, architecture, device)
