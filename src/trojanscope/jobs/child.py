"""Run a job in a fresh child process. The child opens the model files (scanned first, see
ml/gate.py), does the work and answers with JSON on a pipe: the parent never unpickles what a
process that loaded an untrusted model sends back, and the parent never loads the model."""

from __future__ import annotations

import json
import multiprocessing
import sys
import traceback

from ..ml.gate import ModelError


class JobError(ModelError):
    """The job failed in the child: its one-line reason (bad input, a refused model, a crash)."""


def run_in_child(name: str, payload: dict, progress: bool = False) -> dict:
    """The result of job `name` (see jobs/__init__.py) on `payload` (JSON-able), computed in a
    spawned process. Raises JobError with the child's reason."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(name, payload, progress, send),
                              name=f"trojanscope-{name}", daemon=True)
    process.start()
    send.close()
    try:
        message = receive.recv_bytes()
    except EOFError:
        process.join()
        raise JobError(f"the {name} process ended without an answer (exit code "
                       f"{process.exitcode}); a model that crashes its loader is not usable") \
            from None
    except BaseException:  # Ctrl-C: do not leave the child running
        process.terminate()
        process.join()
        raise
    finally:
        receive.close()
    process.join()
    answer = json.loads(message)
    if "error" in answer:
        raise JobError(answer["error"])
    return answer["result"]


def _child(name: str, payload: dict, progress_on: bool, send) -> None:
    import resource

    from .. import progress
    from ..data.datasets import DataError
    from . import JOBS

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    progress.enable(progress_on)
    try:
        answer = {"result": JOBS[name](payload)}
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
