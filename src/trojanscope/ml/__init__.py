"""What vet, inspect, repair and diff share: one model adapter over every format
(`open_model`: scanned first, refused when scan finds code that would run), the architectures
of state-dict files and the zoo, and the child process model files are loaded in."""

from .gate import ModelError, UnsafeModelError
from .model import Model

__all__ = ["Model", "ModelError", "UnsafeModelError", "open_model"]


def open_model(path, architecture=None, device=None) -> Model:
    from .formats import open_model as _open

    return _open(path, architecture, device)
