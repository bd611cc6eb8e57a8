"""Past one machine: scan on Ray (ray_scan.py), a result cache keyed by content
(result_cache.py) that a scan and the platform share, and the platform's checks run as Ray
tasks (ray_jobs.py). `scan` here is `trojanscope scan` with those options."""

from .result_cache import CacheError, ResultCache, scanner_key
from .scan import scan

__all__ = ["CacheError", "ResultCache", "scan", "scanner_key"]
