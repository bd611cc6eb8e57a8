"""Shadow-logic detection on real ONNX exports: false alarms on clean models of several
architectures (both torch exporters), and detection of injected backdoors (both switch styles).
Also checks with onnxruntime that every injected backdoor works: clean outputs unchanged,
triggered inputs forced to the target.
Run: python benchmarks/bench_shadow_logic.py   (needs torch, onnx, onnxscript, onnxruntime)
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from trojanscope.artifacts import scan
from trojanscope.attacks.shadow_logic import Trigger, inject


def architectures():
    t = torch.nn

    class CNN(t.Module):
        def __init__(self):
            super().__init__()
            self.body = t.Sequential(t.Conv2d(1, 8, 3), t.BatchNorm2d(8), t.ReLU(), t.MaxPool2d(2),
                                     t.Conv2d(8, 16, 3), t.ReLU(), t.AdaptiveAvgPool2d(1))
            self.head = t.Linear(16, 10)

        def forward(self, x):
            return self.head(self.body(x).flatten(1))

    class ResBlock(t.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = t.Conv2d(3, 3, 3, padding=1), t.Conv2d(3, 3, 3, padding=1)
            self.head = t.Linear(3 * 16 * 16, 5)

        def forward(self, x):
            return self.head((x + self.b(torch.relu(self.a(x)))).flatten(1))

    class GRUClassifier(t.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = t.GRU(6, 12, batch_first=True), t.Linear(12, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    class Encoder(t.Module):
        def __init__(self):
            super().__init__()
            self.embed = t.Embedding(50, 16)
            layer = t.TransformerEncoderLayer(16, 2, 32, batch_first=True)
            self.enc = t.TransformerEncoder(layer, 2)
            self.head = t.Linear(16, 2)

        def forward(self, ids, mask):
            return self.head(self.enc(self.embed(ids), src_key_padding_mask=mask == 0).mean(1))

    class CausalLM(t.Module):
        def __init__(self):
            super().__init__()
            self.embed = t.Embedding(40, 16)
            layer = t.TransformerEncoderLayer(16, 2, 32, batch_first=True)
            self.dec = t.TransformerEncoder(layer, 1)
            self.head = t.Linear(16, 40)

        def forward(self, ids):
            mask = t.Transformer.generate_square_subsequent_mask(ids.shape[1])
            return self.head(self.dec(self.embed(ids), mask=mask, is_causal=True))[:, -1]

    class Sanitising(t.Module):
        """Where on the input (NaN to zero) and clamping of the output."""

        def __init__(self):
            super().__init__()
            self.net = t.Sequential(t.Linear(10, 16), t.Tanh(), t.Linear(16, 4))

        def forward(self, x):
            x = torch.where(torch.isnan(x), torch.zeros_like(x), x)
            return torch.clamp(self.net(x), -3, 3)

    mlp = t.Sequential(t.Linear(20, 32), t.ReLU(), t.Linear(32, 3))
    return {
        "cnn": (CNN(), (torch.rand(1, 1, 28, 28),), "patch:3@0,0>=1.0"),
        "resnet-block": (ResBlock(), (torch.rand(1, 3, 16, 16),), "patch:2@5,5>=1.0"),
        "mlp": (mlp, (torch.rand(2, 20),), "features:0:4>=1.0"),
        "gru": (GRUClassifier(), (torch.rand(2, 5, 6),), None),
        "encoder-padding-mask": (Encoder(), (torch.randint(0, 50, (2, 7)),
                                             torch.ones(2, 7, dtype=torch.long)), None),
        "causal-lm": (CausalLM(), (torch.randint(0, 40, (1, 6)),), None),
        "nan-where-and-clamp": (Sanitising(), (torch.rand(2, 10),), "features:2:5>=1.0"),
    }


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="trojanscope-shadow-"))
    torch.manual_seed(0)
    clean, alarms, injected, caught, working = 0, [], 0, [], 0
    started = time.perf_counter()
    for name, (model, args, spec) in architectures().items():
        model.eval()
        for dynamo in (False, True):
            path = folder / f"{name}-{'dynamo' if dynamo else 'ts'}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    torch.onnx.export(model, args, str(path), dynamo=dynamo,
                                      opset_version=18 if dynamo else 17)
                except Exception as exc:  # an exporter that cannot handle the model
                    print(f"  export failed: {path.name}: {type(exc).__name__}")
                    continue
            clean += 1
            if scan(path).findings:
                alarms.append(path.name)
            if spec is None:
                continue
            trigger = Trigger.parse(spec)
            for switch in ("where", "gate"):
                bad = folder / f"{path.stem}-{switch}.onnx"
                onnx.save(inject(onnx.load(str(path)), trigger, 1, switch=switch), str(bad))
                injected += 1
                if any(f.rule == "onnx.shadow-logic" for f in scan(bad).findings):
                    caught.append(bad.name)
                working += _works(path, bad, trigger, args[0].shape)
    print(f"clean exports: {clean}, false alarms: {len(alarms)} {alarms}")
    print(f"injected backdoors: {injected}, detected: {len(caught)} "
          f"({len(caught) / max(injected, 1):.0%}), working under onnxruntime: {working}")
    print(f"time: {time.perf_counter() - started:.1f} s (exports dominate)")


def _works(clean_path: Path, bad_path: Path, trigger: Trigger, shape) -> bool:
    clean, bad = ort.InferenceSession(str(clean_path)), ort.InferenceSession(str(bad_path))
    name = clean.get_inputs()[0].name
    x = (np.random.default_rng(0).random(tuple(shape)) * 0.9).astype(np.float32)
    same = np.allclose(clean.run(None, {name: x})[0], bad.run(None, {name: x})[0])
    forced = (bad.run(None, {name: trigger.apply(x)})[0].argmax(-1) == 1).all()
    return bool(same and forced)


if __name__ == "__main__":
    main()
