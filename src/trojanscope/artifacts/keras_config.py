"""Checks a Keras model configuration (Keras 3 config.json, legacy HDF5 model_config, or
model.to_json()) for what runs code on load: Lambda layers (marshalled Python), objects whose
module lies outside Keras (CVE-2025-1550 class), custom registered objects. Nothing is
unmarshalled or imported."""

from __future__ import annotations

import json

from ..findings import Location, Rule, Severity

LAMBDA = Rule("keras.lambda-layer", Severity.CRITICAL,
              "A Lambda layer carries Python bytecode that runs when the model is loaded or used",
              "Do not load this model (safe_mode=False would run the code); ask for a model "
              "without Lambda layers.")
UNSAFE_MODULE = Rule("keras.unsafe-module", Severity.CRITICAL,
                     "The config names a known code-execution gadget as a Keras object",
                     "Do not load this model: Keras would import and call what it names.")
FOREIGN_MODULE = Rule("keras.foreign-module", Severity.HIGH,
                      "The config names an object from a module outside Keras",
                      "Do not load this model unless you know and trust the named module: "
                      "loading imports it.")
CUSTOM_OBJECT = Rule("keras.custom-object", Severity.MEDIUM,
                     "The config needs a custom registered object",
                     "Loading needs the author's code for this object; review that code.")
RISKY_TF_OP = Rule("keras.risky-tf-op", Severity.HIGH,
                   "A TFOpLambda layer calls a TensorFlow function that reads or writes files or "
                   "runs Python",
                   "Do not load this model; the layer runs the named function on every call.")

KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras")
RISKY_TF_FUNCTIONS = ("io.", "py_func", "py_function", "numpy_function", "compat.v1.py_func",
                      "print", "debugging", "summary", "gfile", "saved_model", "raw_ops.ReadFile",
                      "raw_ops.WriteFile")
MAX_DEPTH = 200


def check_keras_config(config: object, location: Location, policy) -> list:
    found: list = []
    _walk(config, location, policy, found, 0, "")
    return found


def _walk(value, location: Location, policy, found: list, depth: int, path: str) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, list):
        for item in value:
            _walk(item, location, policy, found, depth + 1, path)
        return
    if not isinstance(value, dict):
        return
    class_name = value.get("class_name")
    config = value.get("config") if isinstance(value.get("config"), dict) else {}
    name = config.get("name") or path
    if class_name == "Lambda":
        found.append(LAMBDA.finding(f"Lambda layer {name!r} holds Python bytecode", location,
                                    {"layer": name}))
    elif class_name == "__lambda__" and not any(  # not the function of a Lambda layer found
            f.rule == LAMBDA.id and f.evidence.get("layer") == path for f in found):
        # a lambda anywhere else: an activation, an initializer
        found.append(LAMBDA.finding(f"{path or 'the model'!r} holds a Python lambda "
                                    "(marshalled bytecode) outside a Lambda layer", location,
                                    {"layer": path}))
    elif class_name == "TFOpLambda":
        function = str(config.get("function", ""))
        if any(function.startswith(p) or f".{p}" in function for p in RISKY_TF_FUNCTIONS):
            found.append(RISKY_TF_OP.finding(f"layer {name!r} calls tf.{function}", location,
                                             {"layer": name, "function": function}))
    module = value.get("module")
    if isinstance(module, str) and isinstance(class_name, str) and class_name != "__lambda__":
        if not module.startswith(KERAS_MODULES):
            _judge_module(value, module, class_name, name, location, policy, found)
        elif class_name == "function":
            _judge_keras_function(value, module, name, location, found)
    for key, item in value.items():
        if isinstance(item, (dict, list)):
            _walk(item, location, policy, found, depth + 1, name if key == "config" else path)


def _judge_module(value: dict, module: str, class_name: str, name: str, location: Location,
                  policy, found: list) -> None:
    # Keras 3 writes functions as class_name "function" with the function's name as config.
    target = value.get("config") if class_name == "function" and \
        isinstance(value.get("config"), str) else class_name
    evidence = {"module": module, "name": target, "in": name}
    verdict = policy.classify(module, target)
    if verdict.severity == Severity.CRITICAL:
        found.append(UNSAFE_MODULE.finding(f"{name!r} deserialises {module}.{target}: "
                                           f"{verdict.reason}", location, evidence))
    elif module in ("builtins", "numpy") or verdict.allowed:
        return
    elif value.get("registered_name") not in (None, class_name, target):
        found.append(CUSTOM_OBJECT.finding(
            f"{name!r} needs custom object {value.get('registered_name')!r} from {module}",
            location, evidence))
    else:
        found.append(FOREIGN_MODULE.finding(f"{name!r} imports {module}.{target}", location,
                                            evidence))


# Keras modules whose functions a saved model may name (activations, losses, metrics and the
# like). Keras resolves a "function" object in any module it can import (safe_mode or not:
# CVE-2025-8747 reached keras.utils.get_file); outside these a function reference is judged.
KERAS_FUNCTION_MODULES = ("activations", "losses", "metrics", "initializers", "regularizers",
                          "constraints", "ops", "backend", "optimizers.schedules", "random")
KERAS_GADGETS = ("get_file", "file_utils", "saving", "io_utils", "model_to_dot", "plot_model",
                 "load_model", "load_weights", "dataset_utils", "config", "subprocess")


def _judge_keras_function(value: dict, module: str, name: str, location: Location,
                          found: list) -> None:
    target = value.get("config") if isinstance(value.get("config"), str) else "?"
    evidence = {"module": module, "name": target, "in": name}
    parts = module.split(".")
    rest = parts[2:] if parts[:2] in (["keras", "src"], ["tensorflow", "keras"]) else parts[1:]
    if any(g in parts or g == target for g in KERAS_GADGETS):
        found.append(UNSAFE_MODULE.finding(f"{name!r} deserialises {module}.{target}, a Keras "
                                           "function that reaches files or the network",
                                           location, evidence))
    elif not rest or not ".".join(rest).startswith(KERAS_FUNCTION_MODULES):
        found.append(FOREIGN_MODULE.finding(f"{name!r} names the function {module}.{target}, "
                                            "which no saved model needs", location, evidence))


MARKERS = ('{"class_name":', '{"class_name" :')


def configs_in_bytes(data: bytes) -> list:
    """Keras configs embedded as JSON text in a binary file (HDF5 attributes, keras_metadata.pb)."""
    decoder = json.JSONDecoder()
    configs, start = [], 0
    text = data.decode("latin-1")
    while True:
        hits = [i for i in (text.find(m, start) for m in MARKERS) if i >= 0]
        if not hits:
            return configs
        at = min(hits)
        try:
            value, start = decoder.raw_decode(text, at)
            configs.append(value)
        except (ValueError, RecursionError):
            start = at + 1
