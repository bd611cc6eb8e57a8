"""Property-based tests: every parser of untrusted bytes ends with findings or a clean report,
never an exception, for mutated and truncated inputs, within bounded time and memory."""

from __future__ import annotations

import importlib.util
import struct
import tracemalloc

from helpers import mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trojanscope.artifacts import Limits, scan_bytes
from trojanscope.artifacts.policy import GlobalsPolicy
from trojanscope.attacks import model_files as mf
from trojanscope.attacks import payload_files as pf
from trojanscope.attacks.pickle_payloads import PAYLOADS
from trojanscope.findings import RULES

MiB = 1024 * 1024
LIMITS = Limits(max_expanded_bytes=16 * MiB, max_item_bytes=MiB, max_opcodes=200_000,
                max_stack=50_000, max_depth=6, parser_seconds=2)
POLICY = GlobalsPolicy.default()


def _corpus() -> list[bytes]:
    payloads = [make("id") for make in PAYLOADS.values()]
    seeds = list(payloads)
    for wrap in mf.WRAPPERS.values():
        seeds.append(wrap(payloads[0]))
    seeds += [mf.torch_zip(payloads[1]), mf.torch_legacy(payloads[2]), mf.npy_object(payloads[3]),
              mf.torch_legacy_tar(payloads[4]), mf.npz({"a.npy": mf.npy_object(b"N.")}),
              mf.torch_legacy_layout(payloads[5], payloads[0]),
              mf.harmless_pickle()]
    seeds += [make("id") for name, make in pf.GENERATORS.items() if name != "keras-h5"]
    if importlib.util.find_spec("h5py") is not None:
        seeds.append(pf.keras_h5("id"))
    seeds += [pf.shadow_mlp(False), pf.shadow_mlp(True, "gate")]
    seeds.append(b'{"metadata": {"total_size": 8}, "weight_map": {"w": "../x.bin", '
                 b'"v": "model-00001-of-00002.safetensors"}}')  # a checkpoint index
    return seeds


CORPUS = _corpus()


@st.composite
def mutated(draw) -> bytes:
    return mutate(draw, draw(st.sampled_from(CORPUS)), length_fields=True)


def _check(data: bytes) -> None:
    report = scan_bytes(data, "fuzz.bin", policy=POLICY, limits=LIMITS)
    for finding in report.findings:
        assert finding.rule in RULES
        assert finding.location.path == "fuzz.bin"
        assert finding.message


FUZZ = settings(max_examples=250, deadline=5000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)


@FUZZ
@given(mutated())
def test_mutated_model_files_never_crash(data):
    _check(data)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_after_a_pickle_header_never_crash(tail):
    for head in (b"\x80\x02", b"\x80\x04", b"\x80\x05\x95" + struct.pack("<Q", len(tail)), b""):
        _check(head + tail)


@FUZZ
@given(st.lists(st.sampled_from([
    b"(", b"t", b"\x85", b"\x86", b"\x87", b")", b"]", b"}", b"N", b"\x88", b"\x89", b"0", b"1",
    b"2", b"R", b"b", b"\x81", b"\x92", b"o", b"s", b"u", b"e", b"a", b"l", b"d", b"\x94",
    b"q\x00", b"q\x01", b"h\x00", b"h\x01", b"\x93", b"\x8c\x02os", b"\x8c\x06system",
    b"cos\nsystem\n", b"K\x01", b"\x82\x01", b"Q", b"\x8f", b"\x90", b"\x91", b"\x97", b"\x98",
    b"\x95\x05\x00\x00\x00\x00\x00\x00\x00", b"i__main__\nX\n", b"."]), max_size=60))
def test_random_opcode_sequences_never_crash(ops):
    _check(b"\x80\x04" + b"".join(ops))


@settings(max_examples=30, deadline=10000, derandomize=True)
@given(mutated())
def test_memory_stays_bounded(data):
    tracemalloc.start()
    try:
        scan_bytes(data, "fuzz.bin", policy=POLICY, limits=LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 * MiB


@st.composite
def mutated_code(draw) -> str:
    """The payload's TorchScript code, edited character by character (or cut short)."""
    code = list(pf.TORCHSCRIPT_CODE.replace("PATH", "'/tmp/x'"))
    for _ in range(draw(st.integers(0, 6))):
        if not code:
            break
        at = draw(st.integers(0, len(code) - 1))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        piece = draw(st.sampled_from(["(", ")", ":", "\n", "  ", "ops.", "torch.", "save",
                                      ".", "\x00", "é", "[" * 300]))
        if kind == "replace":
            code[at] = piece
        elif kind == "insert":
            code.insert(at, piece)
        elif kind == "delete":
            del code[at]
        else:
            del code[at:]
    return "".join(code)


@FUZZ
@given(mutated_code())
def test_mutated_torchscript_code_ends_in_findings_or_nothing(code):
    """The code of a TorchScript archive, edited: parsed (never compiled), judged, no crash."""
    report = scan_bytes(pf.torchscript_archive(code), "fuzz.pt", policy=POLICY, limits=LIMITS)
    assert {f.rule for f in report.findings} <= {
        "torchscript.file-access", "torchscript.custom-operator", "torchscript.unparsable",
        "torchscript.unlisted-operator"}


@st.composite
def long_template(draw) -> bytes:
    """A chat template whose emitted text is one long run of what the text checks search
    (addresses, links, dunders, markup), repeated tens of thousands of times."""
    piece = draw(st.sampled_from(["a", "a.", "x@", "1.", "_", "__a", "<|", "ab-", "http:/",
                                  "never tell ", "{", "é"]))
    times = draw(st.integers(1_000, 60_000))
    head = draw(st.sampled_from(["", "{% for m in messages %}{{ m.content }}{% endfor %}"]))
    return (head + "{{ '" + piece.replace("'", "") * times + "' }}").encode()


@settings(max_examples=20, deadline=5000, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(long_template())
def test_long_template_text_is_judged_in_bounded_time(data):
    _check(data)
