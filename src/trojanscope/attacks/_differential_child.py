"""The differential oracle's child process: loads model files with the real loaders, one by
one, under an audit hook, and reports what each load did as JSON lines.

Run as `python -m trojanscope.attacks._differential_child JOBS.json`, where JOBS.json lists
{"i", "path", "loader", "cwd"}. Each file loads in its own, empty working directory `cwd`
(where every generated command and write is aimed). The lines go to the original stdout;
stdout and stderr of the loads go to /dev/null and stderr. A line is one of
  {"ready": true, "baseline": N}          after the loaders and their reference files loaded
  {"i": k, "ev": NAME, "arg": TEXT}       a dangerous event while file k loads
  {"i": k, "done": true, "error": TEXT|null, "globals": [...], "notes": [...], "restart": B}
With "restart" true the child exits after the line: file k changed the process (a thread that
outlived the load, a replaced builtin) and later files need a fresh one.

Dangerous events: an import of a module whose top-level package the loaders did not import
while loading reference files (the baseline; such modules are dropped from sys.modules after
each file, so the next file that imports one is seen too); commands (os.system,
subprocess.Popen, os.exec*, os.spawn*, os.posix_spawn, os.fork); open for writing; exec and
compile, except by the import system or namedtuple/dataclasses, and except ast's parses;
ctypes.*, socket.*, shutil.*; removing, renaming, making or linking files; the network clients;
webbrowser.open; audit and trace hooks. A callable given to atexit.register runs at the end of
its file's load (not at exit), and threads a load starts are waited for, so that what they do
is the file's.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
ALWAYS = {"os.system", "subprocess.Popen", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
          "os.forkpty", "pty.spawn", "os.startfile", "webbrowser.open", "os.remove",
          "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.link",
          "os.symlink", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "sqlite3.connect",
          "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect",
          "poplib.connect", "imaplib.open", "telnetlib.Telnet.open", "tempfile.mkstemp",
          "tempfile.mkdtemp", "sys.addaudithook", "sys.setprofile", "sys.settrace"}
PREFIXES = ("ctypes.", "socket.", "shutil.", "cpython.run_")
NOT_STATE = {"__warningregistry__", "_"}  # warnings seen; the REPL's last value
CODE_MAKERS = ("/collections/__init__.py", "/dataclasses.py", "/typing.py", "/enum.py")


class State:
    current = -1
    recording = False
    tops: set[str] = set()
    out = 1
    globals: list[str] = []
    exits: list = []


guard = threading.local()


def emit(record: dict) -> None:
    os.write(State.out, (json.dumps(record) + "\n").encode())


def _in_import_or_library() -> bool:
    """Whether exec/compile was called by the import system or by a library that makes code
    (namedtuple, dataclasses): that code is the library's, and the import rule judges it."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name in ("hook", "dangerous",
                                                         "_in_import_or_library"):
        frame = frame.f_back
    if frame is not None and frame.f_code.co_filename.endswith(CODE_MAKERS):
        return True
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def dangerous(event: str, args: tuple) -> bool:
    if event == "import":
        return str(args[0]).split(".")[0] not in State.tops
    if event == "open":
        mode, flags = args[1], args[2]
        return bool((isinstance(mode, str) and set(mode) & set("wax+"))
                    or (isinstance(flags, int) and flags & WRITE_FLAGS))
    if event == "compile":
        return args[1] != "<unknown>" and not _in_import_or_library()
    if event == "exec":
        return not _in_import_or_library()
    return event in ALWAYS or event.startswith(PREFIXES)


def hook(event: str, args: tuple) -> None:
    if not State.recording or getattr(guard, "busy", False):
        return
    guard.busy = True
    try:
        if event == "pickle.find_class" and len(State.globals) < 64:
            State.globals.append(f"{args[0]}.{args[1]}")
        elif dangerous(event, args):
            emit({"i": State.current, "ev": event, "arg": repr(args)[:300]})
    except Exception:  # noqa: BLE001 - the hook must never break the load it watches
        pass
    finally:
        guard.busy = False


def recording_register(func, *args, **kwargs):
    """atexit.register, deferred to the end of the file's load (and noted there)."""
    if State.recording:
        State.exits.append((func, args, kwargs))
    return func


def make_loaders() -> dict:
    import pickle

    import joblib
    import numpy
    import torch

    def load_pickle(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    return {"pickle": load_pickle, "torch": lambda p: torch.load(p, weights_only=False),
            "numpy": lambda p: numpy.load(p, allow_pickle=True), "joblib": joblib.load}


def baseline(loaders: dict, scratch: str) -> None:
    """Load harmless files written by the libraries themselves (and broken ones): what the
    loaders import doing so is the allowlist of the import rule (by top-level package)."""
    import collections
    import datetime
    import decimal
    import fractions
    import pathlib
    import pickle
    import re
    import uuid

    import joblib
    import numpy
    import torch
    from sklearn.linear_model import LogisticRegression

    net = torch.nn.Linear(2, 2)
    obj = {"sd": net.state_dict(), "a": numpy.arange(3.0), "est": LogisticRegression(),
           "od": collections.OrderedDict(a=1), "misc": [decimal.Decimal("1"),
           fractions.Fraction(1, 3), uuid.UUID(int=1), datetime.date(2020, 1, 1),
           datetime.timedelta(1), pathlib.PurePosixPath("a"), re.compile("a+")]}
    files = {"pickle": pickle.dumps(obj, 2), "pickle4": pickle.dumps(obj, 4)}
    for name, kwargs in (("torch", {}), ("torch-legacy", {"_use_new_zipfile_serialization":
                                                         False})):
        path = os.path.join(scratch, name)
        torch.save(obj, path, **kwargs)
        files[name] = open(path, "rb").read()
    path = os.path.join(scratch, "a.npy")
    numpy.save(path, numpy.array([obj], dtype=object), allow_pickle=True)
    files["numpy"] = open(path, "rb").read()
    path = os.path.join(scratch, "a.joblib")
    joblib.dump(obj, path, compress=3)
    files["joblib"] = open(path, "rb").read()
    jobs = [(loader, data) for loader in loaders for data in files.values()]
    jobs += [(loader, b"\x80\x04\x95") for loader in loaders]  # the error paths
    for i, (loader, data) in enumerate(jobs):
        path = os.path.join(scratch, f"ref{i}")
        with open(path, "wb") as f:
            f.write(data)
        try:
            loaders[loader](path)
        except Exception:  # noqa: BLE001 - most files do not match most loaders
            pass


def fingerprint() -> dict[str, int]:
    """Identities of what loaders and later files rely on: the attributes of some core modules
    (a load that replaces one, say os.system, changes every later file's behaviour)."""
    import builtins
    import copyreg
    import functools
    import io
    import operator
    import pickle
    import subprocess

    found = {f"{m.__name__}.{k}": id(v) for m in (builtins, os, pickle, copyreg, io,
                                                 subprocess, functools, operator)
             for k, v in list(vars(m).items()) if k not in NOT_STATE}
    found["copyreg extensions"] = len(copyreg._extension_registry)
    found["sys.path"] = hash(tuple(sys.path))
    return found


def finish(notes: list, threads_before: set) -> bool:
    """Run what the load deferred and wait for what it started; True: restart the child."""
    import gc

    for func, args, kwargs in State.exits:
        notes.append(f"atexit ran {func!r:.80}")
        try:
            func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"atexit callable raised {type(exc).__name__}")
    State.exits.clear()
    gc.collect()
    restart = False
    for thread in set(threading.enumerate()) - threads_before:
        for _ in range(50):  # a thread still starting cannot be joined yet
            try:
                thread.join(timeout=5)
                break
            except RuntimeError:
                time.sleep(0.01)
        if thread.is_alive():
            notes.append(f"thread {thread.name} still running")
            restart = True
    return restart


def load_one(job: dict, loaders: dict, scratch: str) -> bool:
    import logging

    State.current, State.globals = job["i"], []
    os.makedirs(job["cwd"], exist_ok=True)
    os.chdir(job["cwd"])
    threads_before, modules_before = set(threading.enumerate()), set(sys.modules)
    handlers, before = list(logging.root.handlers), fingerprint()
    error, notes, started = None, [], time.perf_counter()
    State.recording = True
    try:
        result = loaders[job["loader"]](job["path"])
        del result
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: the file's doing
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    # Modules the load imported are dropped first, while its events are still recorded: an
    # object they held (a dbm.dumb database that writes when collected) is collected now,
    # under this file, not during a later one.
    for name in set(sys.modules) - modules_before:  # imported again next time, seen again
        if name.split(".")[0] not in State.tops:
            del sys.modules[name]
    try:
        restart = finish(notes, threads_before)
    finally:
        State.recording = False
    os.chdir(scratch)
    logging.root.handlers[:] = handlers
    after = fingerprint()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        notes.append(f"the load changed {', '.join(changed[:5])}")
        restart = True
    emit({"i": job["i"], "done": True, "error": error, "globals": State.globals,
          "notes": notes, "restart": restart, "seconds": round(time.perf_counter() - started, 3)})
    return restart


def main() -> None:
    import atexit
    import gc

    State.out = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    sys.stdout = open(os.devnull, "w")
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    scratch = os.path.dirname(os.path.abspath(sys.argv[1]))
    loaders = make_loaders()
    baseline(loaders, scratch)
    State.tops = {name.split(".")[0] for name in sys.modules}
    gc.freeze()  # the libraries' objects: collecting after each file then costs little
    atexit.register = recording_register
    sys.addaudithook(hook)
    emit({"ready": True, "baseline": len(State.tops)})
    for job in jobs:
        if load_one(job, loaders, scratch):
            break
    sys.stdout.flush()
    os._exit(0)  # no exit handlers: none of the loads' may run outside their file


if __name__ == "__main__":
    main()
