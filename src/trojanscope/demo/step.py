"""One step of the demo: a question asked of inputs whose truth the demo knows."""

from __future__ import annotations

from dataclasses import dataclass

from ..render.html import Section


@dataclass(frozen=True)
class Step:
    section: Section  # heading (the question), notes, the report and its pictures
    command: str      # the command that asks the same question of the user's own files
    truth: str        # what the demo did, and whether the report matches it
    right: bool
    seconds: float

    def overview(self) -> dict:
        return {"question": self.section.heading, "verdict": _verdict(self.section.report),
                "truth": self.truth, "right": "yes" if self.right else "NO",
                "seconds": round(self.seconds, 1), "on your own files": self.command}


def _verdict(report) -> str:
    from ..render.text import summary_line

    return summary_line(report, len(report.findings))
