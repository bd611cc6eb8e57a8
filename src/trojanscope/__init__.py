"""trojanscope: find backdoors in the AI supply chain, and remove them.

`scan` (is this file safe to load?) needs nothing beyond the standard library; `vet`,
`inspect`, `repair`, `diff`, `sign` and `verify` (trojanscope.api) need their extras and are
imported on first use. Each returns a Report."""

__version__ = "0.1.0"

from .artifacts import scan, scan_bytes  # noqa: E402
from .findings import RULES, Finding, Location, Report, Rule, ScanError, Severity  # noqa: E402

API = ("vet", "inspect", "repair", "diff", "sign", "verify", "InputError")
__all__ = ["Finding", "Location", "Report", "Rule", "RULES", "ScanError", "Severity", "scan",
           "scan_bytes", "__version__", *API]


def __getattr__(name: str):
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'trojanscope' has no attribute {name!r}")
