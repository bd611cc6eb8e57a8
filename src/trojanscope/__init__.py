"""trojanscope: find backdoors in the AI supply chain, and remove them."""

__version__ = "0.1.0"

from .artifacts import scan, scan_bytes  # noqa: E402
from .findings import RULES, Finding, Location, Report, Rule, ScanError, Severity  # noqa: E402

__all__ = ["Finding", "Location", "Report", "Rule", "RULES", "ScanError", "Severity", "scan",
           "scan_bytes", "__version__"]
