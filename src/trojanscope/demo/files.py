"""`trojanscope demo`: make harmless and harmful model files, scan them, show what a user sees.

Harmful files are assembled from opcodes (attacks/), never by pickling a live object, and the
scan only reads them; nothing in them runs.
"""

from __future__ import annotations

import pickle
import struct
import tempfile
from pathlib import Path
from typing import Callable

from .artifacts import scan
from .attacks import model_files as mf
from .attacks import payload_files as pf
from .attacks import pickle_payloads as pp
from .findings import Severity
from .render import render_text

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
    }


def run_demo(keep: Path | None, echo: Callable[[str], None]) -> bool:
    """Write the demo files, scan them and print the report. True when every verdict is right."""
    if keep is not None:
        return _run(Path(keep), echo)
    with tempfile.TemporaryDirectory(prefix="trojanscope-demo-") as folder:
        return _run(Path(folder), echo)


def _run(folder: Path, echo: Callable[[str], None]) -> bool:
    files = demo_files()
    for name, (data, _, _) in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    echo(f"trojanscope demo: {len(files)} model files written to {folder}")
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
    if wrong:
        echo(f"demo: unexpected verdicts for {', '.join(wrong)}")
        return False
    echo(f"demo: all {harmful_count} harmful files flagged at high or critical, "
         f"{len(files) - harmful_count} harmless files passed; nothing was loaded or run.")
    echo(f"exit code of that scan: {report.exit_code()} (0 clean, 1 findings, 2 errors)")
    return True
