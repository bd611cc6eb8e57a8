"""Step 1 of the demo: harmless and harmful model files, scanned.

Harmful files are assembled from bytes (attacks/), never by pickling a live object or saving a
live model, and the scan only reads them; nothing in them runs.
"""

from __future__ import annotations

import pickle
import struct
import time
from pathlib import Path
from typing import Callable

from ..artifacts import scan
from ..attacks import model_files as mf
from ..attacks import payload_files as pf
from ..attacks import pickle_payloads as pp
from ..findings import Severity
from ..render import render_text
from ..render.html import Section
from .step import Step

COMMAND = "echo trojanscope-demo-payload"


def demo_files() -> dict[str, tuple[bytes, bool, str]]:
    """name -> (bytes, harmful?, what it is)."""
    state = pickle.dumps({"layer.weight": [[0.1, -0.2], [0.3, 0.4]], "layer.bias": [0.0, 0.1]},
                         protocol=2)
    array = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + (
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }".ljust(117) + "\n").encode()
    return {
        "clean/checkpoint.pt": (mf.torch_zip(state), False, "PyTorch zip checkpoint"),
        "clean/weights.pkl": (mf.harmless_pickle(), False, "plain pickle of numbers"),
        "clean/features.npy": (array + struct.pack("<4f", 1, 2, 3, 4), False, "NumPy array"),
        "suspect/model.pt": (mf.torch_zip(pp.classic(COMMAND)), True,
                             "PyTorch checkpoint whose data.pkl calls os.system"),
        "suspect/resnet.bin": (mf.torch_legacy(pp.dotted_name(COMMAND)), True,
                               "legacy torch file; 'pathlib' + 'os.system' dotted name"),
        "suspect/pipeline.joblib": (mf.WRAPPERS["zlib"](pp.memo_indirection(COMMAND)), True,
                                    "compressed joblib; names reach STACK_GLOBAL via the memo"),
        "suspect/embeddings.npy": (mf.npy_object(pp.nested_load_from_bytes(COMMAND)), True,
                                   "object array; payload nested in _load_from_bytes"),
        "suspect/bundle.tar.gz": (mf.WRAPPERS["tar.gz"](pp.getattr_chain(COMMAND)), True,
                                  "tar.gz; getattr(__import__('os'), 'system')"),
        "suspect/weights.7z": (mf.WRAPPERS["7z"](pp.python2_builtin(COMMAND)), True,
                               "7z; Python 2 __builtin__.eval"),
        "suspect/adapter.safetensors": (pp.lying_frame(COMMAND), True,
                                        "a pickle under a safetensors name, lying FRAME"),
        "clean/classifier.onnx": (pf.shadow_mlp(backdoor=False), False, "ONNX classifier"),
        "suspect/classifier.onnx": (pf.shadow_mlp(backdoor=True), True,
                                    "the same classifier plus shadow logic (no code at all)"),
        "suspect/encoder.keras": (pf.keras_lambda(COMMAND), True,
                                  "Keras 3 model with a Lambda layer"),
        "suspect/chat.gguf": (pf.gguf(COMMAND), True,
                              "GGUF whose chat template escapes the Jinja sandbox"),
        "suspect/scripted.pt": (pf.torchscript(COMMAND), True,
                                "TorchScript whose __setstate__ writes a file while loading"),
    }


def scan_step(folder: Path, echo: Callable[[str], None]) -> Step:
    """Write the files under `folder`, scan them, print the report."""
    started = time.perf_counter()
    files = demo_files()
    for name, (data, _, _) in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    echo(f"1. scan: is this file safe to load? {len(files)} model files written to {folder}")
    for name, (_, harmful, what) in files.items():
        echo(f"  {'harmful ' if harmful else 'harmless'}  {name:30s} {what}")
    echo("")
    echo(f"$ trojanscope scan {folder}")
    report = scan(folder)
    echo(render_text(report, min_severity=Severity.MEDIUM))
    flagged = {Path(f.location.path).relative_to(folder).as_posix()
               for f in report.at_or_above(Severity.HIGH)}
    wrong = [name for name, (_, harmful, _) in files.items() if (name in flagged) != harmful]
    harmful_count = sum(h for _, h, _ in files.values())
    truth = (f"{harmful_count} harmful files, {len(files) - harmful_count} harmless: " +
             (f"wrong verdicts for {', '.join(wrong)}" if wrong else
              "every harmful file flagged at high or critical, no harmless one"))
    echo(f"truth: {truth}; nothing was loaded or run.")
    made = tuple({"file": name, "harmful": harmful, "what it is": what}
                 for name, (_, harmful, what) in files.items())
    return Step(Section("scan: is this model file safe to load?", report,
                        ("Model files written by the demo. The harmful ones are built from "
                         "bytes; the scan only reads them, nothing in them is loaded or run.",),
                        made),
                "trojanscope scan DIR -f html -o scan.html", truth, not wrong,
                time.perf_counter() - started)
