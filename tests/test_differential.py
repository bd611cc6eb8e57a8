"""The differential loop (benchmarks/bench_scan_differential.py): its generator is a function
of the seed, its oracle sees harmful loads (and only those, and each in its own file), and
every file it found scan missing (tests/data/differential) now scans as high or worse."""

from __future__ import annotations

import dataclasses
import importlib
import random
import time
from pathlib import Path

import pytest

from trojanscope.artifacts import scan_bytes
from trojanscope.attacks import pickle_payloads as pp
from trojanscope.attacks._differential_catalogue import (
    CALL,
    HARMFUL,
    HARMLESS,
    C,
    G,
    T,
)
from trojanscope.attacks.differential import CONTAINERS, Sample, encode, generate
from trojanscope.findings import Severity

REGRESSIONS = Path(__file__).parent / "data" / "differential"


def test_every_missed_file_now_scans_high():
    """Files the loop found running code while scan said < high (passes when there are none)."""
    missed = []
    for path in sorted(REGRESSIONS.glob("*")) if REGRESSIONS.is_dir() else []:
        report = scan_bytes(path.read_bytes(), path.name)
        if report.max_severity is None or report.max_severity < Severity.HIGH:
            missed.append(f"{path.name}: {report.max_severity}")
    assert not missed, missed


def test_generator_is_a_function_of_the_seed(monkeypatch):
    first = generate(3, 60)
    assert len({s.container for s in first}) > 10 and {s.protocol for s in first} == set(
        range(6))
    by_container = {name: generate(9, 2, containers=[name]) for name in CONTAINERS}
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # archives carry no clock
    assert generate(3, 60) == first
    assert {name: generate(9, 2, containers=[name]) for name in CONTAINERS} == by_container
    assert [s.data for s in generate(4, 60)] != [s.data for s in first]


def test_every_catalogued_name_resolves():
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    unresolved = []
    for entry in HARMFUL + HARMLESS:
        for module, name in ((entry.module, entry.name), *entry.aliases):
            try:
                found = importlib.import_module(module)
                for part in name.split("."):
                    found = getattr(found, part)
            except (ImportError, AttributeError) as exc:
                unresolved.append(f"{module}.{name}: {exc}")
    assert not unresolved


def _sample(index: int, payload: bytes, harmful: bool) -> Sample:
    return Sample(index, "pickle", "pickle", payload, payload, 2, harmful, ())


@pytest.mark.torch
@pytest.mark.sklearn
@pytest.mark.joblib
@pytest.mark.numpy
def test_oracle_sees_what_each_file_does(tmp_path):
    from trojanscope.attacks.differential_oracle import run_oracle

    containers = ["pickle", "torch-zip", "torch-legacy", "npy", "joblib-zlib", "wrap-gzip",
                  "wrap-7z"]
    harmful = generate(11, 10, harmful_share=1.0, containers=containers)
    harmless = [dataclasses.replace(s, index=100 + s.index)
                for s in generate(12, 6, harmful_share=0.0, containers=containers)]
    # A payload that runs in a thread after its load returns, then a harmless file: the
    # command is the first file's, not the second's.
    late = CALL(CALL(G("operator", "methodcaller"), C("start")), CALL(
        G("threading", "Thread"), C(None), G("os", "system"), C(None),
        T(C("sleep 0.3; touch canary"))))
    handmade = [_sample(200, encode(late, random.Random(0), 2), True),
                _sample(201, pp.proto(2) + pp.unicode("harmless") + pp.STOP, False),
                _sample(202, pp.classic("touch canary"), True)]
    samples = harmful + harmless + handmade
    verdicts = run_oracle(samples, tmp_path, timeout=20, budget_seconds=150)
    for sample in samples:
        verdict = verdicts[sample.index]
        assert verdict.status in ("ok", "error"), (sample.name, verdict)
        if sample.harmful:
            assert verdict.ran_code, (sample.name, sample.uses, verdict)
        else:  # importing a stdlib module the loaders do not (statistics) is all they may do
            assert not verdict.canary and all(e == "import" for e, _ in verdict.events), (
                sample.name, sample.uses, verdict)
    assert verdicts[200].canary and ("os.system" in {e for e, _ in verdicts[200].events})
    assert not verdicts[201].events and not verdicts[201].canary
