"""Run a job in a fresh child process. The child opens the model files (scanned first, see
ml/gate.py), does the work and answers with JSON on a pipe: the parent never unpickles what a
process that loaded an untrusted model sends back, and the parent never loads the model."""

from __future__ import annotations

import json
import os
import sys
import traceback

from ..ml.gate import ModelError


class JobError(ModelError):
    """The job failed in the child: its one-line reason (bad input, a refused model, a crash)."""


TIME_LIMIT = 4 * 3600  # seconds: a model that loops forever must not hold the command


def run_in_child(name: str, payload: dict, progress: bool = False,
                 time_limit: float | None = TIME_LIMIT,
                 memory_limit: int | None = None) -> dict:
    """The result of job `name` (see jobs/__init__.py) on `payload` (JSON-able), computed in a
    spawned process stopped after `time_limit` seconds and limited to `memory_limit` bytes of
    address space (default: 80% of the machine's memory). Raises JobError with the child's
    reason."""
    import multiprocessing  # only when a job runs: the command line's start-up

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    memory = memory_limit if memory_limit is not None else _default_memory()
    process = context.Process(target=_child, args=(name, payload, progress, memory, send),
                              name=f"trojanscope-{name}", daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(time_limit):
            raise TimeoutError
        message = receive.recv_bytes()
    except TimeoutError:
        _stop(process)
        raise JobError(f"{name} stopped after {time_limit:,.0f} s (--time-limit): the model "
                       "may loop forever") from None
    except EOFError:
        process.join()
        raise JobError(f"the {name} process ended without an answer ({_how(process)}); a "
                       "model that crashes or exhausts its loader is not usable") from None
    except BaseException:  # Ctrl-C: do not leave the child running
        _stop(process)
        raise
    finally:
        receive.close()
    process.join()
    answer = json.loads(message)
    if "error" in answer:
        raise JobError(answer["error"])
    return answer["result"]


def _stop(process) -> None:
    process.terminate()
    process.join(10)
    if process.is_alive():
        process.kill()
        process.join()


def _how(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _default_memory() -> int | None:
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _child(name: str, payload: dict, progress_on: bool, memory: int | None, send) -> None:
    import resource

    # This process loads untrusted files: every torch.load in it, the ones inside torch's own
    # loaders included (torch.export.load falls back to weights_only=False), loads weights only.
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    # nor does anything it loads fetch from the Hub (a config can name a Hub kernel to import)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from .. import progress
    from ..data.datasets import DataError
    from . import JOBS

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    progress.enable(progress_on)
    try:
        answer = {"result": JOBS[name](payload)}
    except MemoryError:
        answer = {"error": f"{name} ran out of memory (limit {memory / 2 ** 30:.1f} GiB)"}
    except (ModelError, DataError, ValueError, RuntimeError) as exc:
        answer = {"error": str(exc).strip().splitlines()[0] if str(exc).strip()
                  else type(exc).__name__}
    except ImportError as exc:
        answer = {"error": f"{name} needs the package {exc.name}: pip install "
                           "'trojanscope[torch,vet]'"}
    except Exception as exc:  # a bug of ours: say so, with the traceback on stderr
        traceback.print_exc(file=sys.stderr)
        answer = {"error": f"internal error in {name}: {type(exc).__name__}: {exc}"}
    send.send_bytes(json.dumps(answer, default=_plain).encode())
    send.close()


def _plain(value):
    """JSON for the numpy scalars and arrays a report may hold."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
