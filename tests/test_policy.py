"""The globals policy: deny by default, gadgets critical, users extend the allowlist."""

from __future__ import annotations

import pytest

from trojanscope.artifacts import GlobalsPolicy, PolicyError, scan, scan_bytes
from trojanscope.attacks.pickle_payloads import STOP, call, global_, proto, unicode
from trojanscope.findings import Severity

POLICY = GlobalsPolicy.default()


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("subprocess", "check_output"),
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("__builtin__", "eval"), ("runpy", "run_path"), ("pip", "main"), ("torch.hub", "load"),
    ("torch", "load"), ("torch.serialization", "load"), ("importlib", "import_module"),
    ("marshal", "loads"), ("types", "FunctionType"), ("timeit", "timeit"), ("pdb", "run"),
    ("cProfile", "run"), ("trace", "Trace"), ("code", "interact"), ("webbrowser", "open"),
    ("socket", "create_connection"), ("ctypes", "CDLL"), ("os.path", "join"),
    ("pathlib", "os.system"), ("torch", "serialization.load"), ("numpy", "load"),
    ("operator", "attrgetter"), ("functools", "reduce"), ("shutil", "rmtree"),
    ("anything", "f.__globals__"), ("x", "__class__.__mro__"), ("torch.jit", "load"),
    ("torch.jit._pickle", "build_intlist.__globals__"), ("torch.jit._serialization", "load"),
    ("torch.jit._pickle", "build_intlist.os.system"),
    ("sklearn.datasets._covtype", "GzipFile"), ("sklearn.callback._transport", "Listener"),
    ("sklearn.ensemble._forest", "Parallel"), ("sklearn.datasets._lfw", "Memory"),
    # re-exported under modules the allowlist's patterns pass (a red team's enumeration)
    ("torch.ao.quantization.fx._equalize", "GraphModule"),
    ("torch.ao.quantization.fx._lower_to_native_backend", "Graph"),
    ("torch.ao.quantization.observer", "Node"), ("torch.ao.quantization.fx.tracer", "Tracer"),
    ("torch.ao.quantization.fx._decomposed", "Library"),
    ("torch.ao.quantization.quantize_fx", "ObservedGraphModule"),
    ("sklearn.utils._available_if", "MethodType"), ("sklearn.base", "ABCMeta"),
    ("sklearn.utils._repr_html.tests.test_js", "HTTPServer"),
    ("numpy.random.bit_generator", "RLock"), ("torch.ao.quantization.observer", "ABCMeta"),
    ("numpy.random.tests.test_direct", "Base"), ("scipy.sparse.tests.test_construct",
                                                 "test_diags_array"),
    ("sklearn.conftest", "DoctestItem"), ("sklearn.utils.parallel", "_FuncWrapper"),
    ("sklearn.utils.parallel", "ThreadpoolController"), ("sklearn.utils._testing", "TempMemmap"),
    ("sklearn.utils._mocking", "CheckingClassifier"),
])
def test_gadgets_are_critical(module, name):
    assert POLICY.classify(module, name).severity == Severity.CRITICAL


@pytest.mark.parametrize("module,name", [
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch", "FloatStorage"), ("torch", "BFloat16Storage"), ("torch", "float16"),
    ("torch.nn.modules.linear", "Linear"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("_codecs", "encode"), ("copy_reg", "_reconstructor"), ("__builtin__", "set"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"), ("sklearn.pipeline", "Pipeline"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("torch.storage", "_load_from_bytes"),
    ("torch.jit._pickle", "build_intlist"), ("torch.jit._pickle", "restore_type_tag"),
    ("__torch__.torch.nn.modules.conv.___torch_mangle_0", "Conv2d"),
    ("sklearn.ensemble._forest", "RandomForestClassifier"),
    ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"),
    # what harmless files in PyPI packages name (benchmarks/bench_scan_real.py)
    ("sklearn.calibration", "_SigmoidCalibration"), ("sklearn.datasets.base", "Bunch"),
    ("__builtin__", "hash"), ("numpy.random", "__RandomState_ctor"),
    ("gensim.models.word2vec", "Word2Vec"), ("gensim.utils", "call_on_class_only"),
    ("sklearn_crfsuite.estimator", "CRF"), ("numpy.core._internal", "_reconstruct"),
    ("torch.ao.quantization.observer", "MinMaxObserver"),
    ("torch.ao.quantization.fake_quantize", "FakeQuantize"),
    ("torch.ao.quantization.qconfig", "QConfig"), ("numpy.random.bit_generator", "SeedSequence"),
    # torch's oldest (tar) format names each tensor's type
    ("torch", "FloatTensor"), ("torch.cuda", "HalfTensor"), ("torch.sparse", "LongTensor"),
    ("torch.cuda.sparse", "ByteTensor"),
])
def test_harmless_globals_pass(module, name):
    assert POLICY.classify(module, name).allowed


@pytest.mark.parametrize("module,name", [
    ("__main__", "Net"), ("mypackage.models", "ResNet"), ("sklearn.pipeline", "Pipeline.fit"),
    ("torch.nn.modules.linear", "some_function"), ("yaml", "load_all"),
    ("torch.cuda", "synchronize"), ("torch.sparse", "mm"),
])
def test_everything_else_is_high_and_named(module, name):
    """Deny by default: what the policy does not know is not loaded (torch's weights_only
    refuses it too)."""
    verdict = POLICY.classify(module, name)
    assert verdict.severity == Severity.HIGH
    assert module in verdict.reason


def _pickle_importing(module: str, name: str) -> bytes:
    return proto(2) + call(global_(module, name), unicode("x")) + STOP


def test_allowlist_file_extends_the_policy(write, tmp_path):
    target = write("model.pkl", _pickle_importing("mylab.models", "TinyNet"))
    assert [f.rule for f in scan(target).findings] == ["pickle.unknown-global"]
    allow = write("allow.toml", b'[allow]\n"mylab.*" = ["TinyNet"]\n')
    extended = GlobalsPolicy.default().extended(allow)
    assert scan(target, policy=extended).findings == ()
    assert str(allow) in extended.sources


def test_allowlist_cannot_silence_a_gadget(write):
    allow = write("allow.toml", b'[allow]\n"os" = ["system"]\n')
    policy = GlobalsPolicy.default().extended(allow)
    assert policy.classify("os", "system").severity == Severity.CRITICAL


def test_allowlist_cannot_exempt_anything(write):
    allow = write("allow.toml", b'[exempt]\n"os" = ["system"]\n')
    with pytest.raises(PolicyError, match="allow.toml: .exempt. is for the packaged policy"):
        GlobalsPolicy.default().extended(allow)


def test_allowlist_can_add_gadgets(write):
    extra = write("deny.toml", b'[critical]\n"mylab.loader" = ["*"]\n')
    policy = GlobalsPolicy.default().extended(extra)
    assert policy.classify("mylab.loader", "run").severity == Severity.CRITICAL


@pytest.mark.parametrize("text,message", [
    (b"[allow\n", "not valid TOML"),
    (b'[allow]\n"x" = 3\n', "list of names"),
    (b'[deny]\n"x" = ["y"]\n', "unknown tables"),
    (b"\xff\xfe", "cannot read"),
])
def test_bad_allowlist_files_name_the_file_and_the_problem(write, text, message):
    path = write("bad.toml", text)
    with pytest.raises(PolicyError) as info:
        GlobalsPolicy.default().extended(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_allowlist_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        GlobalsPolicy.default().extended(tmp_path / "nope.toml")


def test_nested_loaders_are_recognised():
    assert POLICY.is_nested_loader("torch.storage", "_load_from_bytes")
    assert POLICY.is_nested_loader("cPickle", "loads")
    assert not POLICY.is_nested_loader("collections", "OrderedDict")


def test_a_partial_is_judged_by_the_callable_it_wraps():
    """functools.partial is how Python pickles any partial (gensim's TF-IDF models): a partial of
    an allowed callable passes; one of an unlisted function is high, one of a gadget critical."""
    def partial_of(module: str, name: str) -> bytes:
        made = call(global_("functools", "partial"), global_(module, name), unicode("x"))
        return proto(2) + made + b"(tR" + STOP  # ... and called with no more arguments

    assert scan_bytes(partial_of("collections", "OrderedDict")).findings == ()
    assert [f.severity for f in scan_bytes(partial_of("mylab.idf", "df2idf")).findings] == \
        [Severity.HIGH]
    assert scan_bytes(partial_of("os", "system")).max_severity == Severity.CRITICAL


def test_partials_nested_without_end_are_an_indirect_call():
    made = global_("collections", "OrderedDict")
    for _ in range(100):
        made = call(global_("functools", "partial"), made)
    report = scan_bytes(proto(2) + made + b"(tR" + STOP)
    assert [f.rule for f in report.findings] == ["pickle.indirect-call"]


def test_the_policy_tables_name_each_module_pattern_once():
    """A dict literal keeps the last of two equal keys: a second "sklearn.*" entry once came
    close to replacing the first's thirty critical names."""
    import ast
    import inspect

    from trojanscope.artifacts import globals_policy

    for node in ast.walk(ast.parse(inspect.getsource(globals_policy))):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
