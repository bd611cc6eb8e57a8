"""scan: is this model file safe to load? Reads bytes only; never unpickles or imports them."""

from .limits import Limits
from .policy import GlobalsPolicy, PolicyError
from .scanner import scan, scan_bytes, scan_stream

__all__ = ["GlobalsPolicy", "Limits", "PolicyError", "scan", "scan_bytes", "scan_stream"]
