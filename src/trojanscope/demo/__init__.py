"""`trojanscope demo`: the four questions end to end on data the install brings, one HTML page.

1. scan: harmless and harmful model files, built from opcodes (nothing in them runs);
2. vet: a contractor's training set, MNIST-5k images with a BadNets patch on 5% of them;
3. inspect: the model trained on that set, with clean images the user kept;
4. repair: the same model, with the same clean images.
The demo made every attack, so it knows the truth and says, step by step, whether trojanscope
was right. Without numpy, scikit-learn, mlxtend and torch (`[demo]`) only step 1 runs.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Callable

from ..render.html import render_html_sections
from .files import scan_step
from .step import Step

NEEDED = ("numpy", "scipy", "sklearn", "mlxtend", "torch")  # steps 2-4
TITLE = "trojanscope demo: the four questions on embedded data"


def run_demo(keep: Path | None, echo: Callable[[str], None], output: Path,
             scan_only: bool = False, config=None) -> bool:
    """Run the steps, print what each found, write the page to `output`. True when every
    verdict is right. `keep`: write the inputs there (else a temporary folder); `config`: a
    `poisoned_mnist.DemoConfig` for steps 2-4 (tests make them small)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return _run(keep, echo, output, scan_only, config)
    with tempfile.TemporaryDirectory(prefix="trojanscope-demo-") as folder:
        return _run(Path(folder), echo, output, scan_only, config)


def _run(folder: Path, echo: Callable[[str], None], output: Path, scan_only: bool,
         config) -> bool:
    steps = [scan_step(folder, echo)]
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if not scan_only and missing:
        echo(f"vet, inspect and repair need {', '.join(missing)}: "
             "pip install 'trojanscope[demo]' (torch==2.13.0 is the CPU build); scan only.")
    elif not scan_only:
        from .poisoned_mnist import DemoConfig, model_steps

        steps.extend(model_steps(folder, echo, config or DemoConfig()))
    output.write_text(render_html_sections(TITLE, [s.overview() for s in steps],
                                           [s.section for s in steps]), encoding="utf-8")
    wrong = [s.section.heading for s in steps if not s.right]
    echo("")
    echo(f"report: {output.resolve()} (one self-contained page: open it in a browser)")
    echo(f"demo: {len(steps) - len(wrong)} of {len(steps)} steps right" +
         (f"; wrong: {'; '.join(wrong)}" if wrong else ""))
    return not wrong


__all__ = ["Step", "run_demo"]
