"""The `trojanscope` command. Thin: parses arguments, calls the library, renders the report."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .artifacts import GlobalsPolicy, PolicyError, scan
from .findings import RULES, Report, Severity
from .render import render_json, render_sarif, render_text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find backdoors in the AI supply chain: is this model file safe to load?")


class Format(str, enum.Enum):
    text = "text"
    json = "json"
    sarif = "sarif"


class Level(str, enum.Enum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trojanscope {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Exit codes: 0 nothing at or above --fail-on, 1 findings, 2 could not do the job."""


@app.command("scan")
def scan_command(
    paths: List[Path] = typer.Argument(..., help="Files or directories (scanned recursively)."),
    output_format: Format = typer.Option(Format.text, "--format", "-f", help="Output format."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write the report here instead of stdout."),
    fail_on: Level = typer.Option(Level.high, "--fail-on",
                                  help="Exit 1 when a finding is at or above this severity."),
    allow: List[Path] = typer.Option([], "--allow",
                                     help="A TOML allowlist ([allow] module = [names]); "
                                          "repeatable."),
    show: Level = typer.Option(Level.low, "--show",
                               help="Lowest severity listed in text output."),
) -> None:
    """Is this model file safe to load? Reads the bytes; never loads, unpickles or imports."""
    policy = GlobalsPolicy.default()
    try:
        for path in allow:
            policy = policy.extended(path)
    except PolicyError as exc:
        _fail(str(exc))
    report = scan(paths, policy=policy)
    _emit(report, output_format, output, Severity.parse(show.value))
    raise typer.Exit(report.exit_code(Severity.parse(fail_on.value)))


@app.command("rules")
def rules_command() -> None:
    """List every rule: id, default severity, what it means and what to do."""
    from . import artifacts  # noqa: F401  (declares the scan rules)

    for rule in sorted(RULES.values(), key=lambda r: r.id):
        typer.echo(f"{rule.id:34s} {str(rule.severity):9s} {rule.title}")
        typer.echo(f"{'':34s} {'':9s} remedy: {rule.remedy}")


@app.command("demo")
def demo_command(
    keep: Optional[Path] = typer.Option(None, "--keep",
                                        help="Write the demo files here and keep them."),
) -> None:
    """Build harmless and harmful model files in a temporary folder and scan them."""
    from .demo import run_demo

    ok = run_demo(keep, echo=typer.echo)
    raise typer.Exit(0 if ok else 1)


def _emit(report: Report, output_format: Format, output: Path | None, show: Severity) -> None:
    if output_format is Format.json:
        text = render_json(report)
    elif output_format is Format.sarif:
        text = render_sarif(report)
    else:
        text = render_text(report, min_severity=show, color=output is None and sys.stdout.isatty())
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"{output}: cannot write the report: {exc.strerror or exc}")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
