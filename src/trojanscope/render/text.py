"""Text for a terminal, with rich: findings worst first, then a one-line verdict."""

from __future__ import annotations

import io
from functools import singledispatch

from ..findings import Report, Severity
from ..results import (
    HardenResults,
    InspectResults,
    RedteamResults,
    Results,
    ScanResults,
    SignResults,
    VerifyResults,
    VetResults,
)
from . import RenderOptions, printable, renderer

STYLES = {Severity.CRITICAL: "bold white on red", Severity.HIGH: "bold red",
          Severity.MEDIUM: "yellow", Severity.LOW: "cyan", Severity.INFO: "dim"}


@renderer("text", "findings worst first, for a terminal (the default)")
def _render(report: Report, options: RenderOptions) -> str:
    return render_text(report, min_severity=options.min_severity, color=options.color)


def render_text(report: Report, *, min_severity: Severity = Severity.LOW, color: bool = False,
                width: int = 110) -> str:
    shown = [f for f in report.findings if f.severity >= min_severity]
    summary = printable(summary_line(report, len(shown)))
    if not shown and not report.errors and not color and len(summary) <= width:
        return summary + "\n"  # one plain line: no layout, so no need to import rich (start-up)

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def plain(text: str, style: str = "") -> Text:  # the attacker's names: no markup, no
        return Text(printable(text), style=style)     # terminal sequences

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width,
                      highlight=False)
    by_file: dict[str, list] = {}
    for f in shown:
        by_file.setdefault(f.location.path, []).append(f)
    for path in sorted(by_file, key=lambda p: (-max(f.severity for f in by_file[p]), p)):
        findings = sorted(by_file[path], key=lambda f: (-int(f.severity), f.sort_key()))
        console.print(plain(path, "bold"), soft_wrap=True)  # a long name is not broken into
        # lines of its own: padded with spaces, one once put a forged verdict at column 0
        table = Table(show_header=False, box=None, padding=(0, 1), expand=False)
        table.add_column("severity", no_wrap=True, min_width=8)
        table.add_column("rule", no_wrap=True)
        table.add_column("where", overflow="fold", max_width=36)
        table.add_column("what", overflow="fold")
        for f in findings:
            where = "!".join(f.location.member) or "-"
            if f.location.offset is not None:
                where += f" @{f.location.offset}"
            table.add_row(Text(str(f.severity), style=STYLES[f.severity]), plain(f.rule),
                          plain(where), plain(f.message))
        console.print(table)
    remedies = sorted({(f.rule, f.remedy) for f in shown if f.severity >= Severity.HIGH})
    if remedies:
        console.print(Text("what to do", style="bold"))
        for rule, remedy in remedies:
            console.print(plain(f"  {rule}: {remedy}"))
    for error in report.errors:
        console.print(plain(f"error: {error.path}: {error.message}", "bold red"), soft_wrap=True)
    style = STYLES.get(report.max_severity, "green") if report.findings else "green"
    console.print(Text(summary, style=style))
    return buffer.getvalue()


def summary_line(report: Report, shown: int) -> str:
    """The one-line verdict (`shown`: how many findings the page lists)."""
    counts = {}
    for f in report.findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    parts = [f"{counts[s]} {s}" for s in sorted(counts, reverse=True)]
    head = f"{report.command}: " + _head(report.results)
    hidden = len(report.findings) - shown
    tail = f" ({hidden} below the display threshold)" if hidden else ""
    if not report.findings:
        body = "no findings"
    else:
        body = f"{len(report.findings)} finding(s): " + ", ".join(parts)
    errors = f", {len(report.errors)} error(s)" if report.errors else ""
    return head + body + errors + tail


@singledispatch
def _head(results: Results) -> str:
    """What the command examined, and its verdict, by the type of its results."""
    return ""


@_head.register
def _(results: ScanResults) -> str:
    return f"{results.files_scanned} file(s), "


@_head.register
def _(results: VetResults) -> str:
    return f"{results.samples} samples, "


@_head.register(SignResults)
@_head.register(VerifyResults)
def _(results) -> str:  # what the signature covers and who made it
    if results.root_digest is None:  # a signature that could not be read
        return ""
    return (f"{results.files} file(s) of {results.model_name!r}, signature {results.signature}, "
            f"signer {results.signer or '?'}, ")


@_head.register
def _(results: InspectResults) -> str:
    targets = results.target_classes
    return f"verdict {results.verdict}" + (
        f" (target classes {', '.join(map(str, targets))})" if targets else "") + ", "


@_head.register
def _(results: HardenResults) -> str:
    recall = results.recall
    caught = "no evasion to check" if not recall["evasions"] else (
        f"{recall['evasions']} evasion(s) caught {recall['before']:.0%} before, "
        f"{recall['after']:.0%} after")
    return (f"scorer written to {results.written}; {caught}; "
            f"{results.clean_classes_flagged} clean class(es) flagged, ")


@_head.register
def _(results: RedteamResults) -> str:
    found = "; ".join(f"{name} {entry['evasions']} evasion(s) in {entry['episodes']} episodes"
                      for name, entry in results.searches.items())
    named = (f"; with no attack it names class(es) {', '.join(map(str, results.clean_flagged))}"
             if results.clean_flagged else "")
    return (f"against {results.against}: {found} (better: {results.better}; clean accuracy "
            f"{results.clean_accuracy:.2f}{named}), ")
