"""The platform's heavy checks (vet, inspect) as Ray tasks: `serve --ray ADDRESS` and
`worker --ray ADDRESS`. The worker that claimed the job keeps its lease and hands in the
report; the task gets the stored bytes through Ray's object store, writes them into a folder
of its own on whatever node runs it, and runs the check there as a worker would (the model in
a child process, after scan passed it). inspect asks for a GPU when the cluster has one.
scan and verify stay in the worker: they read bytes, and scan's results come from the cache."""

from __future__ import annotations

GPU_KINDS = {"inspect"}


def run_on_ray(ray, kind: str, inputs: dict[str, tuple[str, bytes]]) -> tuple[dict, dict | None,
                                                                             str]:
    """(report, images, node id) of the check `kind` on `inputs` (role: (file name, bytes));
    JobFailed when it cannot be done."""
    from ..serve.worker import JobFailed

    gpus = 1 if kind in GPU_KINDS and ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(max_retries=2, num_cpus=1, num_gpus=gpus)(_check_task)
    try:
        outcome, *rest = ray.get(task.remote(kind, inputs))
    except ray.exceptions.RayError as exc:
        raise JobFailed(f"the Ray task failed: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}") from None
    if outcome == "failed":
        raise JobFailed(rest[0])
    return tuple(rest)


def _check_task(kind: str, inputs: dict) -> tuple:
    """In a Ray worker: ("done", report, images, node) or ("failed", why). Plain data back."""
    import ray

    from ..serve.worker import JobFailed, check_files

    try:
        report, images = check_files(kind, inputs)
    except JobFailed as exc:
        return ("failed", str(exc))
    return ("done", report, images, ray.get_runtime_context().get_node_id())
