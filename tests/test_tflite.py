"""TFLite models: the operators they ask for, read from the FlatBuffer with checked offsets."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trojanscope.artifacts import scan_bytes
from trojanscope.artifacts.tflite_format import TFLiteError, operator_codes
from trojanscope.attacks import model_files as mf
from trojanscope.findings import Severity

OPERATORS = [3, 9, "FlexWriteFile", "MyLabOp", "FlexAddV2", 22]


def test_operator_codes_are_read_as_tflites_own_schema_reads_them():
    """The `tflite` package is TFLite's schema compiled to Python by flatc: the reference."""
    tflite = pytest.importorskip("tflite")
    data = mf.tflite_of(OPERATORS)
    model = tflite.Model.GetRootAsModel(data, 0)
    reference = [model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength())]
    assert operator_codes(data) == [None if r is None else r.decode() for r in reference]


def test_flex_ops_that_reach_files_are_high_and_custom_kernels_medium(tmp_path):
    from trojanscope.artifacts import scan

    path = tmp_path / "model.tflite"
    path.write_bytes(mf.tflite_of(OPERATORS))
    report = scan(path)
    found = {(f.rule, f.evidence["op"]): f.severity for f in report.findings}
    assert found == {("tflite.unsafe-flex-op", "FlexWriteFile"): Severity.HIGH,
                     ("tflite.custom-op", "FlexAddV2"): Severity.MEDIUM,
                     ("tflite.custom-op", "MyLabOp"): Severity.MEDIUM}
    assert report.results["files"][0]["formats"] == ["tflite"]


def test_builtin_operators_only_is_clean():
    assert scan_bytes(mf.tflite_of([3, 9, 22, 17]), "model.tflite").findings == ()


def test_a_cut_model_is_unreadable_not_clean():
    report = scan_bytes(mf.tflite_of(OPERATORS)[:60], "model.tflite")
    assert [(f.rule, f.severity) for f in report.findings] == \
        [("tflite.malformed", Severity.HIGH)]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.data())
def test_mutated_models_give_codes_or_a_clear_error_in_bounded_time(data):
    model = bytearray(mf.tflite_of(OPERATORS))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(model) - 1))
        model[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(model)))
    started = time.perf_counter()
    try:
        codes = operator_codes(bytes(model[:cut]))
        assert len(codes) <= len(model)
    except TFLiteError:
        pass
    assert time.perf_counter() - started < 1.0
