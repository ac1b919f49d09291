"""Independent fits run side by side, one per CPU thread."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import TypeVar

import torch

from demixstudio.jobs.context import JobContext
from demixstudio.separation.nmf import engine

T = TypeVar("T")


def run_at_once(tasks: Sequence[Callable[[JobContext], T]], ctx: JobContext,
                device: torch.device, message: str) -> list[T]:
    """``task(context)`` for each of ``tasks``, up to :func:`engine.cpu_threads` of them
    at once on the CPU; their results in order.

    For fits too small to share among the threads (a dictionary of a few seconds of
    example is one chunk of frames, which the engine runs on one thread while the
    other waits), and independent of each other: the level check's four folds
    (:func:`.repair.level.fill_gain`), say. Each task runs on its own thread with
    torch held at one thread (:func:`engine.single_threaded_ops`) and its fits
    using no worker threads of their own (:func:`engine.fits_on_this_thread`), so
    the results are those of the tasks run one after another, to rounding: a fit
    run alone may cut its frames into other chunks. A task gets a context that
    shares ``ctx``'s cancel flag and reports nowhere; this thread reports the tasks
    as they finish. On a GPU, or with one thread, the tasks run one after another,
    each reporting in its share of ``ctx``.
    """
    n = len(tasks)
    workers = min(n, engine.cpu_threads()) if device.type == "cpu" else 1
    if workers <= 1:
        out = []
        for i, task in enumerate(tasks):
            with ctx.stage(i / n, (i + 1) / n, message):
                out.append(task(ctx))
        return out

    def run(task: Callable[[JobContext], T]) -> T:
        with engine.fits_on_this_thread():
            return task(JobContext(cancel_event=ctx.cancel_event))

    with engine.single_threaded_ops():
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nmf-task")
        futures = [pool.submit(run, task) for task in tasks]
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for f in finished:
                    if f.exception() is not None:
                        raise f.exception()
                ctx.progress(n - len(pending), n, message)  # raises if cancelled
            return [f.result() for f in futures]
        finally:
            # On an error or a cancel the tasks not started are dropped; the running
            # ones see the shared cancel flag, or finish.
            pool.shutdown(wait=True, cancel_futures=True)
