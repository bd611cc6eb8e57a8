"""The packaged policy for the globals that a pickle imports: module pattern -> name patterns.

Deny by default: a global matched by ALLOW passes silently, one matched by CRITICAL is a known
code-execution gadget (critical), anything else is high and named: loading it imports code that
the file names, which torch.load(weights_only=True) refuses as well. Module keys and names are
shell-style patterns (fnmatch). A CRITICAL module key also covers its submodules ("os" covers
"os.path"). EXEMPT (this policy only; an allowlist cannot have it): harmless names allowed
although a CRITICAL key covers them. Users extend ALLOW with a TOML file of the same shape
(`trojanscope scan --allow FILE`, tables [allow] and [critical]).

Data, kept as Python so that it loads from bytecode: the command line's start-up (issue 17).
"""

# The legacy tensor classes torch.load(weights_only=True) accepts (its _tensor_classes).
LEGACY_TENSORS = ["BFloat16Tensor", "BoolTensor", "ByteTensor", "CharTensor", "DoubleTensor",
                  "FloatTensor", "HalfTensor", "IntTensor", "LongTensor", "ShortTensor"]

ALLOW = {
    # What torch.load(weights_only=True) accepts, and what torch.save writes.
    "collections": ["OrderedDict", "defaultdict", "Counter", "deque"],
    "builtins": ["set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes", "complex",
                 "slice", "range", "int", "float", "bool", "str", "object", "NoneType", "Ellipsis",
                 "NotImplemented", "hash"],  # hash: gensim pickles call it on its own keys
    "_codecs": ["encode"],
    "copyreg": ["_reconstructor", "__newobj__", "__newobj_ex__"],
    "torch": ["*Storage", "Size", "device", "dtype", "layout", "memory_format", "finfo", "iinfo",
              "Tensor", "float*", "bfloat16", "half", "double", "int*", "uint*", "long", "short",
              "bool", "complex*", "cfloat", "cdouble", "chalf", "qint*", "quint*", "bits*",
              "strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc",
              "_mkldnn", "jagged", "contiguous_format", "channels_last", "channels_last_3d",
              "preserve_format", "per_tensor_affine", "per_channel_affine",
              "per_tensor_symmetric", "per_channel_symmetric",
              "per_channel_affine_float_qparams", *LEGACY_TENSORS],
    # torch's oldest (tar) format names each tensor's type: torch.FloatTensor and the like
    "torch.cuda": LEGACY_TENSORS, "torch.sparse": LEGACY_TENSORS,
    "torch.cuda.sparse": LEGACY_TENSORS,
    "torch._utils": ["_rebuild_*"],
    "torch._tensor": ["_rebuild_from_type", "_rebuild_from_type_v2"],
    "torch.storage": ["TypedStorage", "UntypedStorage", "_TypedStorage", "_load_from_bytes"],
    "torch.serialization": ["_get_layout"],
    # TorchScript archives (torch.jit.save) name the classes compiled from the archive's code/
    # under __torch__, a module Python's unpickler cannot import (that code is not judged here).
    "__torch__": ["[A-Za-z_]*"],
    "__torch__.*": ["[A-Za-z_]*"],
    "torch.nn.parameter": ["Parameter", "Buffer", "UninitializedParameter", "UninitializedBuffer"],
    "torch.nn.modules.*": ["[A-Z]*"],
    "torch.optim.*": ["[A-Z]*"],
    "torch.nn.utils.parametrize": ["ParametrizationList"],
    "torch.ao.quantization.*": ["[A-Z]*"],
    "torch.distributions.*": ["[A-Z]*"],
    # NumPy array, dtype and random-state reconstruction.
    "numpy": ["ndarray", "dtype", "matrix", "float*", "int*", "uint*", "bool_", "complex*",
              "str_", "bytes_", "void", "object_", "datetime64", "timedelta64",
              # NumPy's ufuncs, pure arithmetic, as NumPy 2 pickles them by name (scikit-learn's
              # FunctionTransformer(np.log1p)); the list NumPy 2.4 exports.
              "abs", "absolute", "acos", "acosh", "add", "arccos", "arccosh", "arcsin", "arcsinh",
              "arctan", "arctan2", "arctanh", "asin", "asinh", "atan", "atan2", "atanh",
              "bitwise_and", "bitwise_count", "bitwise_invert", "bitwise_left_shift",
              "bitwise_not", "bitwise_or", "bitwise_right_shift", "bitwise_xor", "cbrt", "ceil",
              "conj", "conjugate", "copysign", "cos", "cosh", "deg2rad", "degrees", "divide",
              "divmod", "equal", "exp", "exp2", "expm1", "fabs", "float_power", "floor",
              "floor_divide", "fmax", "fmin", "fmod", "frexp", "gcd", "greater", "greater_equal",
              "heaviside", "hypot", "invert", "isfinite", "isinf", "isnan", "isnat", "lcm",
              "ldexp", "left_shift", "less", "less_equal", "log", "log10", "log1p", "log2",
              "logaddexp", "logaddexp2", "logical_and", "logical_not", "logical_or",
              "logical_xor", "matmul", "matvec", "maximum", "minimum", "mod", "modf", "multiply",
              "negative", "nextafter", "not_equal", "positive", "pow", "power", "rad2deg",
              "radians", "reciprocal", "remainder", "right_shift", "rint", "sign", "signbit",
              "sin", "sinh", "spacing", "sqrt", "square", "subtract", "tan", "tanh",
              "true_divide", "trunc", "vecdot", "vecmat"],
    "numpy.core.multiarray": ["_reconstruct", "scalar"],
    "numpy._core.multiarray": ["_reconstruct", "scalar"],
    "numpy.core.numeric": ["_frombuffer"],
    "numpy._core.numeric": ["_frombuffer"],
    "numpy.dtypes": ["*DType"],
    "numpy.ma.core": ["_mareconstruct", "MaskedArray"],
    "numpy.random._pickle": ["__randomstate_ctor", "__generator_ctor", "__bit_generator_ctor"],
    "numpy.random": ["__RandomState_ctor"],  # what NumPy before 1.17 wrote
    "numpy.core._internal": ["_reconstruct"],  # NumPy 1.0's object arrays (Python 2)
    "numpy._core._internal": ["_reconstruct"],
    "numpy.random.*": ["[A-Z]*", "__pyx_unpickle_SeedSequence"],
    # joblib's wrapper for arrays written beside the pickle, and scikit-learn estimators (classes
    # only: the unpickler instantiates them and restores their attributes, which runs no
    # file-named code).
    "joblib.numpy_pickle": ["NumpyArrayWrapper", "ZNDArrayWrapper", "NDArrayWrapper"],
    "sklearn.*": ["[A-Z]*", "_[A-Z]*"],  # but see CRITICAL: what its modules import
    # The Cython trees' and distance metrics' pickling helper: newObj(cls) is cls.__new__(cls)
    # (its class is a global of its own, judged as every global is).
    "sklearn.neighbors._kd_tree": ["newObj"],
    "sklearn.neighbors._ball_tree": ["newObj"],
    "sklearn.metrics._dist_metrics": ["newObj"],
    # Model libraries whose pickles real packages ship (measured: benchmarks/bench_scan_real.py):
    # their classes, as for scikit-learn; the functions their pickles name, one by one.
    "sklearn_crfsuite.*": ["[A-Z]*"],
    "pycrfsuite.*": ["[A-Z]*"],
    "gensim.*": ["[A-Z]*"],
    "gensim.utils": ["call_on_class_only", "identity"],
    "gensim.models.tfidfmodel": ["df2idf", "precompute_idfs", "smartirs_wlocal", "smartirs_wglobal",
                                 "smartirs_normalize", "resolve_weights"],
    "gensim.models.phrases": ["original_scorer", "npmi_scorer"],
    "gensim.models.ensemblelda": ["mass_masking", "rank_masking"],
    "gensim.models.ldaseqmodel": ["sslm"],
    "morfessor.*": ["[A-Z]*"],
    "scipy.sparse.*": ["[a-z]*_matrix", "[a-z]*_array"],
    "datetime": ["date", "datetime", "time", "timedelta", "timezone"],
    "decimal": ["Decimal"],
    "fractions": ["Fraction"],
    "uuid": ["UUID"],
    "pathlib": ["PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"],
    "enum": ["Enum", "IntEnum"],
    "re": ["_compile"],

}


CRITICAL = {
    # Run commands or code.
    "os": ["*"],
    "posix": ["*"],
    "nt": ["*"],
    "subprocess": ["*"],
    "_posixsubprocess": ["*"],
    "pty": ["*"],
    "commands": ["*"],
    "popen2": ["*"],
    "platform": ["popen", "_syscmd_*", "system"],
    "builtins": ["eval", "exec", "compile", "getattr", "setattr", "delattr", "__import__", "open",
                 "globals", "locals", "vars", "input", "breakpoint", "help", "exit", "quit",
                 "execfile", "file", "reload", "apply", "memoryview", "type", "super",
                 "classmethod", "staticmethod", "property", "print"],
    "__builtin__": ["eval", "exec", "compile", "getattr", "setattr", "delattr", "__import__",
                    "open", "globals", "locals", "vars", "input", "execfile", "file", "reload",
                    "apply"],
    "runpy": ["*"],
    "code": ["*"],
    "codeop": ["*"],
    "pdb": ["*"],
    "bdb": ["*"],
    "cProfile": ["*"],
    "profile": ["*"],
    "trace": ["*"],
    "timeit": ["*"],
    "doctest": ["*"],
    "pydoc": ["*"],
    "idlelib": ["*"],
    "IPython": ["*"],
    "sys": ["*"],
    "site": ["*"],
    "sysconfig": ["*"],
    # Import, load or build code objects.
    "importlib": ["*"],
    "imp": ["*"],
    "pkgutil": ["*"],
    "zipimport": ["*"],
    "marshal": ["*"],
    "types": ["*"],
    "ctypes": ["*"],
    "_ctypes": ["*"],
    "cffi": ["*"],
    "pickle": ["*"],
    "_pickle": ["*"],
    "cPickle": ["*"],
    "pickletools": ["*"],
    "shelve": ["*"],
    "dill": ["*"],
    "cloudpickle": ["*"],
    "joblib": ["load", "_pickle", "numpy_pickle.load"],
    "numpy": ["load", "loads", "fromfile", "load_library", "f2py", "distutils", "testing"],
    "numpy.lib.npyio": ["load"],
    "numpy.f2py": ["*"],
    "numpy.distutils": ["*"],
    "numpy.testing": ["*"],
    "numpy.ctypeslib": ["*"],
    "torch": ["load", "hub", "jit", "package", "compile", "ops", "classes", "_C", "_dynamo",
              "_inductor", "utils", "serialization", "_ops", "library"],
    "torch.hub": ["*"],
    "torch.serialization": ["load", "_load", "_legacy_load"],
    "torch.jit": ["*"],
    "torch.package": ["*"],
    "torch.utils.cpp_extension": ["*"],
    "torch._C": ["*"],
    "torch._dynamo": ["*"],
    "torch._inductor": ["*"],
    "torch.fx": ["*"],
    "torch.ops": ["*"],
    "torch._ops": ["*"],
    "torch.library": ["*"],
    "torch.utils.data.datapipes": ["*"],
    "tensorflow": ["*"],
    "keras": ["*"],
    # Attribute-walking and call-building gadgets.
    "operator": ["*"],
    "_operator": ["*"],
    "functools": ["*"],
    "_functools": ["*"],
    "inspect": ["*"],
    "threading": ["*"],
    "_thread": ["*"],
    "multiprocessing": ["*"],
    "concurrent": ["*"],
    "asyncio": ["*"],
    "signal": ["*"],
    "atexit": ["*"],
    "gc": ["*"],
    "weakref": ["*"],
    "string": ["Formatter", "Template"],
    "jinja2": ["*"],
    "mako": ["*"],
    # Files and the network.
    "shutil": ["*"],
    "tempfile": ["*"],
    "io": ["*"],
    "_io": ["*"],
    "codecs": ["open", "EncodedFile", "StreamReader*", "StreamWriter*", "lookup", "getreader",
               "getwriter", "iterdecode", "iterencode", "decode", "encode"],
    "fileinput": ["*"],
    "glob": ["*"],
    "linecache": ["*"],
    "posixpath": ["*"],
    "ntpath": ["*"],
    "genericpath": ["*"],
    "socket": ["*"],
    "_socket": ["*"],
    "ssl": ["*"],
    "select": ["*"],
    "selectors": ["*"],
    "socketserver": ["*"],
    "http": ["*"],
    "httplib": ["*"],
    "urllib": ["*"],
    "urllib2": ["*"],
    "urllib3": ["*"],
    "requests": ["*"],
    "httpx": ["*"],
    "aiohttp": ["*"],
    "ftplib": ["*"],
    "smtplib": ["*"],
    "poplib": ["*"],
    "imaplib": ["*"],
    "telnetlib": ["*"],
    "xmlrpc": ["*"],
    "webbrowser": ["*"],
    "antigravity": ["*"],
    "this": ["*"],
    # Package managers and builders.
    "pip": ["*"],
    "_pip": ["*"],
    "ensurepip": ["*"],
    "venv": ["*"],
    "distutils": ["*"],
    "setuptools": ["*"],
    "sqlite3": ["*"],
    "dbm": ["*"],
    # Classes that scikit-learn modules import from the standard library and joblib: reachable as
    # "sklearn.<module>.<Name>", so the [allow] pattern above would pass them (found by the
    # differential loop, benchmarks/bench_scan_differential.py). Its data-set, callback and
    # vendored modules hold no estimator a model pickle names.
    "sklearn.datasets": ["*"],
    "sklearn.callback": ["*"],
    "sklearn.externals": ["*"],
    "sklearn.*": ["GzipFile", "BZ2File", "LZMAFile", "ZipFile", "TarFile", "NamedTemporaryFile",
                  "TemporaryFile", "TemporaryDirectory", "SpooledTemporaryFile", "Memory",
                  "Parallel", "Listener", "Client", "Connection", "Thread", "Timer", "Process",
                  "Pool", "ThreadPool", "ThreadPoolExecutor", "ProcessPoolExecutor", "Request",
                  "Path", "PosixPath", "WindowsPath", "PurePath", "BytesIO", "StringIO",
                  "FileIO", "TextIOWrapper", "BufferedWriter", "BufferedReader", "Popen",
                  "CompilationUnit", "ScriptFunction", "Logger", "FileHandler", "Formatter",
                  # and more found by a red team's enumeration (every name the [allow]
                  # patterns pass, resolved to the module that defines it)
                  "MethodType", "FunctionType", "ABCMeta", "HTTPServer",
                  "BaseHTTPRequestHandler", "CalledProcessError", "TimeoutExpired",
                  "CallbackSupportMixin", "_BaseCallback", "Parameter", "ThreadpoolController",
                  "TempMemmap"],
    # Test modules, conftest and test helpers: no model names them, and they import servers,
    # subprocesses, mocks that call what they are given (a second red team's enumeration).
    "*.tests": ["*"],
    "*.conftest": ["*"],
    "sklearn.utils._testing": ["*"],
    "sklearn.utils._mocking": ["*"],
    "sklearn.utils.parallel": ["_FuncWrapper", "ThreadpoolController"],
    # torch.fx's classes re-exported by quantization's fx modules, under the [allow] pattern
    # "torch.ao.quantization.*" (a red team's): GraphModule generates Python source from its
    # graph and runs it; Graph, Node and the Tracer build that graph; _decomposed re-exports
    # torch.library.Library. Observed graph modules of FX quantization are GraphModules too.
    "torch.ao.quantization.fx": ["*"],
    "torch.ao.quantization.quantize_fx": ["*"],
    "torch.ao.quantization.*": ["GraphModule", "ObservedGraphModule", "Graph", "Node", "Tracer",
                                "QuantizationTracer", "Scope", "Library", "ABCMeta"],
    "numpy.random.*": ["RLock", "Lock", "ABCMeta"],  # threading's and abc's, re-exported

}


NESTED_LOADERS = {
    # Callables that deserialise their first argument; a constant argument is scanned in place.
    "pickle": ["loads", "_loads"],
    "_pickle": ["loads"],
    "cPickle": ["loads"],
    "dill": ["loads"],
    "cloudpickle": ["loads"],
    "numpy": ["loads"],
    "torch.storage": ["_load_from_bytes"],

}


EXEMPT = {
    # functools.partial makes a callable of an allowed one (gensim pickles partials of its own
    # functions); the pickle machine judges the wrapped callable when the partial is called.
    "functools": ["partial"],
    "_functools": ["partial"],
    # joblib as old scikit-learn vendored it: its array wrappers (sklearn.externals is critical).
    "sklearn.externals.joblib.numpy_pickle": ["NumpyArrayWrapper", "ZNDArrayWrapper",
                                              "NDArrayWrapper"],
    # scikit-learn's Bunch (a dict) as old versions wrote it, under sklearn.datasets (critical).
    "sklearn.datasets.base": ["Bunch"],
    "sklearn.datasets._base": ["Bunch"],
    # TorchScript's pickles call these identity functions on lists (torch/jit/_pickle.py).
    "torch.jit._pickle": ["build_intlist", "build_tensorlist", "build_doublelist", "build_boollist",
                          "build_tensor_from_id", "restore_type_tag"],
}
