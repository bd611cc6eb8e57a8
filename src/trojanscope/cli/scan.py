"""scan (is this model file safe to load?) and rules (what scan and the others can report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import render
from ..findings import Severity, all_rules
from .common import EXIT_CODES, SEVERITIES, UserError, emit

NAMES = ("scan", "rules")


def add(commands) -> None:
    _add_scan(commands)
    _add_rules(commands)


def run(args: argparse.Namespace) -> int:
    return _scan(args) if args.command == "scan" else _rules(args.markdown)


def _add_scan(commands) -> None:
    scan = commands.add_parser(
        "scan", epilog=EXIT_CODES,
        help="is this model file safe to load? (reads bytes; never loads or imports them)",
        description="Examine model files and directories (recursively) by content. Nothing in "
                    "them is unpickled, imported or run.")
    scan.add_argument("paths", nargs="+", type=_path, metavar="PATH")
    scan.add_argument("-f", "--format", choices=render.names(), default="text",
                      help="output format (default: text)")
    scan.add_argument("-o", "--output", type=Path, help="write the report here, not to stdout")
    scan.add_argument("--fail-on", choices=SEVERITIES, default="high",
                      help="exit 1 when a finding is at or above this severity (default: high)")
    scan.add_argument("--allow", type=Path, action="append", default=[], metavar="FILE",
                      help="a TOML allowlist ([allow] \"module\" = [\"Name\"]); repeatable")
    scan.add_argument("--show", choices=SEVERITIES, default="low",
                      help="lowest severity listed in text output (default: low)")
    scale = scan.add_argument_group("many files (docs/scale.md; needs trojanscope[ray])")
    scale.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="scan on Ray: join the cluster at ADDRESS (host:port), or without "
                            "one start Ray on this machine")
    scale.add_argument("--workers", type=int, metavar="N",
                       help="CPUs of the Ray started on this machine (default: all)")
    scale.add_argument("--cache", nargs="?", const="local", metavar="URL",
                       help="reuse results for files whose bytes were scanned before: a "
                            "database URL (the service's, to share its results) or a file; "
                            "without one, a file under ~/.cache/trojanscope")
    scale.add_argument("--trust-stamps", action="store_true",
                       help="with --cache: take a file whose inode, size and times are "
                            "unchanged since it was hashed as unchanged, without hashing it "
                            "(faster; a writer who can change a file without changing its "
                            "times, e.g. through a shared memory map, defeats it)")


def _path(text: str) -> Path:
    if not text:  # Path("") is ".": an empty argument would scan the working folder
        raise argparse.ArgumentTypeError("an empty path names no file")
    return Path(text)


def _add_rules(commands) -> None:
    rules = commands.add_parser("rules", help="list every rule: id, severity, meaning, remedy")
    rules.add_argument("--markdown", action="store_true",
                       help="print docs/rules.md (a markdown table) instead")


def _scan(args: argparse.Namespace) -> int:
    from ..artifacts import GlobalsPolicy, PolicyError, scan

    policy = GlobalsPolicy.default()
    try:
        for path in args.allow:
            policy = policy.extended(path)
    except PolicyError as exc:
        raise UserError(str(exc)) from None
    if args.trust_stamps and args.cache is None:
        raise UserError("--trust-stamps is for --cache")
    if args.workers is not None and args.ray != "local":
        raise UserError("--workers is for a Ray started here (--ray without an address)")
    if args.ray is None and args.cache is None:
        report = scan(args.paths, policy=policy)
    else:
        report = _scan_at_scale(args, policy)
    emit(report, args.format, args.output, Severity.parse(args.show))
    return report.exit_code(Severity.parse(args.fail_on))


def _scan_at_scale(args: argparse.Namespace, policy):
    from .. import progress
    from ..api import InputError

    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    try:
        from ..cluster import CacheError, scan
    except ImportError as exc:
        raise UserError(f"--ray and --cache need {exc.name}: pip install 'trojanscope[ray]'"
                        ) from None
    progress.enable(args.format == "text")
    try:
        return scan(args.paths, policy=policy, ray=args.ray, workers=args.workers,
                    cache=args.cache, trust_stamps=args.trust_stamps, progress=True)
    except (CacheError, InputError) as exc:
        raise UserError(str(exc)) from None


def _rules(markdown: bool) -> int:
    rules = sorted(all_rules().values(), key=lambda r: r.id)
    if markdown:
        print("# Rules\n\nEvery finding names one of these rules. The id is stable; the severity "
              "is the default.\nGenerated by `trojanscope rules --markdown > docs/rules.md`.\n")
        print("| rule | default severity | meaning | what to do |\n| --- | --- | --- | --- |")
        for rule in rules:
            print(f"| `{rule.id}` | {rule.severity} | {rule.title} | {rule.remedy} |")
        return 0
    for rule in rules:
        print(f"{rule.id:34s} {str(rule.severity):9s} {rule.title}")
        print(f"{'':34s} {'':9s} remedy: {rule.remedy}")
    return 0
