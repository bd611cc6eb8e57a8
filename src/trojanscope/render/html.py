"""One self-contained HTML page per report: styles inline, charts as inline SVG, images as data
URIs, no script and nothing fetched, so it can be attached to a ticket and opened anywhere.

Every page has the verdict line, the findings (worst first, evidence folded under each) and the
errors; then the figures the command produced: score histograms and per-class bars for vet and
inspect, trigger phrases for text, file lists for scan, sign and verify.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import singledispatch
from html import escape

from ..findings import Report, Severity
from ..results import (
    TRIGGER_IMAGES,
    HardenResults,
    InspectResults,
    RedteamResults,
    RepairResults,
    Results,
    ScanResults,
    VerifyResults,
    VetResults,
    trigger_image,
)
from . import RenderOptions, renderer

COLOURS = {Severity.CRITICAL: "#b3001b", Severity.HIGH: "#d9480f", Severity.MEDIUM: "#e0a100",
           Severity.LOW: "#1971c2", Severity.INFO: "#6c757d"}
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#212529}
h1{font-size:1.5em;margin-bottom:.2em}
h1.part{border-top:3px solid #343a40;padding-top:.6em;margin-top:2em}
h2{font-size:1.15em;margin-top:1.6em}
.verdict{font-size:1.1em;font-weight:600;padding:.5em .8em;border-radius:4px;color:#fff}
table{border-collapse:collapse;width:100%;margin:.5em 0} td,th{border-bottom:1px solid #dee2e6;
padding:.3em .5em;text-align:left;vertical-align:top} th{background:#f1f3f5}
.sev{color:#fff;border-radius:3px;padding:0 .4em;font-size:.85em;white-space:nowrap}
code,pre{font:12px ui-monospace,monospace} pre{background:#f8f9fa;padding:.5em;overflow:auto}
.muted{color:#6c757d} figure{display:inline-block;margin:.5em 1em .5em 0;text-align:center}
figure img{image-rendering:pixelated;width:112px;height:112px;border:1px solid #ced4da}
"""


@renderer("html", "one self-contained page, with the images")
def _render(report: Report, options: RenderOptions) -> str:
    return render_html(report, dict(options.images), options.gallery)


def render_html(report: Report, images: dict[str, bytes] | None = None,
                gallery: str = "Images") -> str:
    """`images`: caption -> PNG bytes, shown as a grid titled `gallery` (recovered triggers,
    the most suspicious samples)."""
    title = f"trojanscope {report.command}: {', '.join(report.targets)}"
    return _page(title, f"<h1>trojanscope {escape(report.command)}</h1>" +
                 report_fragment(report, images, gallery))


@dataclass(frozen=True)
class Section:
    """One report on a page of several (the demo): a heading, sentences shown under it, a table
    of what was made (the ground truth), the report and its pictures."""
    heading: str
    report: Report
    notes: tuple[str, ...] = ()
    made: tuple[dict, ...] = ()
    images: dict[str, bytes] | None = None
    gallery: str = "Images"


def render_html_sections(title: str, overview: list[dict], sections: list[Section]) -> str:
    """Several reports on one page: an overview table (a row per section), then each report."""
    parts = [f"<h1>{escape(title)}</h1>", _table("Overview", overview)]
    for number, section in enumerate(sections, 1):
        parts.append(f"<section><h1 class=part id=part{number}>{number}. "
                     f"{escape(section.heading)}</h1>" +
                     "".join(f"<p>{escape(note)}</p>" for note in section.notes) +
                     _table("What the demo made (the truth)", section.made) +
                     report_fragment(section.report, section.images, section.gallery) +
                     "</section>")
    return _page(title, "".join(parts))


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{body}</body></html>\n")


def report_fragment(report: Report, images: dict[str, bytes] | None = None,
                    gallery: str = "Images") -> str:
    """One report as HTML to put inside a page that carries STYLE (the service's pages)."""
    from .text import summary_line

    findings = sorted(report.findings, key=lambda f: (-int(f.severity), f.sort_key()))
    worst = report.max_severity
    colour = COLOURS[worst] if worst is not None and worst >= Severity.MEDIUM else "#2b8a3e"
    parts = [f"<p class=muted>{escape(', '.join(report.targets))} · version "
             f"{escape(report.version)} · {report.timings.get('total_seconds', '?')} s</p>",
             f"<p class=verdict style='background:{colour}'>"
             f"{escape(summary_line(report, len(findings)))}</p>"]
    parts.append(_findings(findings))
    if report.errors:
        parts.append("<h2>Could not be examined</h2><ul>" + "".join(
            f"<li><code>{escape(e.path)}</code>: {escape(e.message)}</li>"
            for e in report.errors) + "</ul>")
    parts.extend(_figures(report.results))
    if not images and isinstance(report.results, InspectResults):
        images = captioned_triggers(report.results)
        gallery = "Recovered triggers per class, target classes first"
    if images:
        parts.append(f"<h2>{escape(gallery)}</h2>" + "".join(
            f"<figure><img alt='{escape(caption)}' src='data:image/png;base64,"
            f"{base64.b64encode(png).decode()}'><figcaption>{escape(caption)}</figcaption>"
            "</figure>" for caption, png in images.items()))
    parts.append(f"<h2>Settings</h2><pre>{escape(json.dumps(dict(report.config), indent=1))}"
                 "</pre>")
    return "".join(parts)


def _findings(findings) -> str:
    if not findings:
        return "<h2>Findings</h2><p>None.</p>"
    rows = []
    for f in findings:
        evidence = dict(f.evidence)
        trace = evidence.pop("trace", None)  # a pickle's opcodes around the finding
        shown = (f"<pre>{escape(chr(10).join(trace))}</pre>" if trace else "") + (
            f"<pre>{escape(json.dumps(evidence, indent=1, default=str))}</pre>"
            if evidence else "")
        folded = (f"<details{' open' if trace else ''}><summary>"
                  f"{'opcodes and evidence' if trace else 'evidence'}</summary>{shown}</details>"
                  if shown else "")
        rows.append(f"<tr><td><span class=sev style='background:{COLOURS[f.severity]}'>"
                    f"{f.severity}</span></td><td><code>{escape(f.rule)}</code></td>"
                    f"<td><code>{escape(str(f.location))}</code></td><td>{escape(f.message)}"
                    f"{folded}<div class=muted>{escape(f.remedy)}</div></td></tr>")
    return ("<h2>Findings</h2><table><tr><th>severity</th><th>rule</th><th>where</th>"
            "<th>what, and what to do</th></tr>" + "".join(rows) + "</table>")


def _figures(results: Results) -> list[str]:
    """The command's own figures (by the type of its results), then its scalar figures."""
    parts = _charts(results)
    scalars = {k: v for k, v in results.to_dict().items()
               if isinstance(v, (str, int, float, bool))}
    if scalars:
        parts.append("<h2>Figures</h2><table>" + "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
            for k, v in scalars.items()) + "</table>")
    return parts


@singledispatch
def _charts(results: Results) -> list[str]:
    return []  # sign, diff, an error report: the scalars and the findings say it all


@_charts.register
def _(results: ScanResults) -> list[str]:
    return [_table("Files", results.files)] if results.files else []


@_charts.register
def _(results: VetResults) -> list[str]:
    parts = []
    cut = results.cut
    if results.scores:
        parts.append("<h2>Suspicion scores of every sample</h2>" + histogram(results.scores, cut) +
                     "<p class=muted>higher is more suspicious; the line is the cut</p>")
    if results.scores and len(results.labels or ()) == len(results.scores):
        by_class: dict = {}
        for score, label in zip(results.scores, results.labels):
            by_class.setdefault(label, []).append(score)
        parts.append("<h2>Scores per class</h2>" + "".join(
            f"<figure>{histogram(by_class[k], cut, bins=20, width=300, height=110)}"
            f"<figcaption>class {escape(str(k))}: {len(by_class[k])} samples</figcaption>"
            "</figure>" for k in sorted(by_class)))
    if results.per_class:
        parts.append("<h2>Share of outlying samples per class</h2>" + bars(
            [(str(c["class"]), c["outlier_share"], c["suspected"]) for c in results.per_class]))
    if results.trigger_phrases is not None:
        phrases = results.trigger_phrases
        parts.append("<h2>Trigger phrases</h2>" + (
            "<ul>" + "".join(f"<li><code>{escape(p)}</code></li>" for p in phrases) + "</ul>"
            if phrases else "<p>None named.</p>"))
        parts.append(_table("Strongest candidates examined", results.top_candidates))
    return parts


@_charts.register
def _(results: InspectResults) -> list[str]:
    return ["<h2>Score per class (a target scores high)</h2>" + bars(
        [(str(c["class"]), c["score"], c["target"]) for c in results.per_class])]


@_charts.register
def _(results: RepairResults) -> list[str]:
    return [_before_after(results)]


@_charts.register
def _(results: RedteamResults) -> list[str]:
    flat = [{"search": e["search"], "episode": e["episode"], **e["config"],
             "attack_success": e["attack_success"], "clean_accuracy": e["clean_accuracy"],
             "detection": e["detection"]} for e in results.evasions]
    return [_table("Searches, same budget", [{"search": name, **entry} for name, entry
                                            in results.searches.items()]),
            _table("Evasions (attack success >= 0.9, missed)", flat),
            _table("Frontier: attack success against detection", results.frontier)]


@_charts.register
def _(results: HardenResults) -> list[str]:
    rows = [{"case": r["case"], "target": r["target"],
             "before": ", ".join(map(str, r["before"]["classes"])) or "-",
             "after": ", ".join(map(str, r["after"]["classes"])) or "-"} for r in results.checks]
    return [_table("Suspected classes, before and after hardening", rows)]


@_charts.register
def _(results: VerifyResults) -> list[str]:
    return [f"<h2>{escape(key.capitalize())}</h2><ul>" +
            "".join(f"<li><code>{escape(str(i))}</code></li>" for i in items) + "</ul>"
            for key, items in (("changed", results.changed), ("added", results.added),
                               ("removed", results.removed)) if items]


def captioned_triggers(results: InspectResults) -> dict[str, bytes]:
    """inspect's recovered triggers, captioned, target classes first."""
    per_class = sorted(results.per_class, key=lambda c: (not c["target"], c["class"]))
    return {f"class {c['class']}{' (target)' if c['target'] else ''} {kind}":
            results.images[trigger_image(c["class"], kind)]
            for c in per_class for kind in TRIGGER_IMAGES
            if trigger_image(c["class"], kind) in results.images}


def _before_after(results: RepairResults) -> str:
    """repair: the model before, and every candidate after (the chosen one in red)."""
    rows = [("before", results.before, False)] + [
        (method, outcome, method == results.method)
        for method, outcome in results.candidates.items()]
    parts = []
    for key, title in (("attack_success", "Attack success on held-out samples"),
                       ("clean_accuracy", "Clean accuracy on held-out samples")):
        parts.append(f"<h2>{title}: before, and after each repair</h2>" + bars(
            [(label, float(outcome.get(key, 0.0)), chosen) for label, outcome, chosen in rows],
            label_width=180))
    table = [{"method": label, **{k: v for k, v in outcome.items() if not isinstance(v, list)}}
             for label, outcome, _ in rows]
    return "".join(parts) + _table("Every candidate", table) + \
        "<p class=muted>in red: the repair chosen on the held-out split</p>"


def _table(title: str, rows) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))  # every key, in order
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(r.get(c)))}</td>" for c in columns) +
                   "</tr>" for r in rows[:200])
    more = f"<p class=muted>and {len(rows) - 200} more</p>" if len(rows) > 200 else ""
    return f"<h2>{escape(title)}</h2><table><tr>{head}</tr>{body}</table>{more}"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def histogram(values, cut=None, bins: int = 40, width: int = 640, height: int = 180) -> str:
    """An inline SVG histogram (log-scaled counts: poisons are a thin tail)."""
    import math

    low, high = min(values), max(values)
    if cut is not None:  # the same axis in every small histogram
        low, high = min(low, cut), max(high, cut)
    span = (high - low) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / span * bins))] += 1
    top = math.log1p(max(counts))
    step = width / bins
    rects = "".join(
        f"<rect x='{i * step:.1f}' y='{height - 20 - h:.1f}' width='{step - 1:.1f}' "
        f"height='{h:.1f}' fill='#4c6ef5'><title>{c}</title></rect>"
        for i, c in enumerate(counts) for h in [(height - 30) * math.log1p(c) / top])
    line = ""
    if cut is not None and low <= cut <= high:
        x = (cut - low) / span * width
        line = (f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{height - 20}' stroke='#c92a2a' "
                "stroke-width='2'/>")
    labels = (f"<text x='0' y='{height - 4}' font-size='11'>{low:.3g}</text>"
              f"<text x='{width}' y='{height - 4}' font-size='11' text-anchor='end'>"
              f"{high:.3g}</text>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"role='img'>{rects}{line}{labels}</svg>")


def bars(items: list[tuple[str, float, bool]], width: int = 640, row: int = 18,
         label_width: int = 80) -> str:
    """Horizontal bars, one per item (a class, a method); flagged ones in red."""
    top = max((v for _, v, _ in items), default=1.0) or 1.0
    room = width - label_width - 80
    height = row * len(items) + 4
    body = "".join(
        f"<text x='0' y='{i * row + 13}' font-size='12'>{escape(label)}</text>"
        f"<rect x='{label_width}' y='{i * row + 2}' width='{max(1.0, room * v / top):.1f}' "
        f"height='{row - 4}' fill='{'#c92a2a' if flagged else '#4c6ef5'}'/>"
        f"<text x='{label_width + 6 + room * max(v, 0) / top:.1f}' y='{i * row + 13}' "
        f"font-size='11'>{v:.3g}</text>" for i, (label, v, flagged) in enumerate(items))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"role='img'>{body}</svg>")
