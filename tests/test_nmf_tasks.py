"""Independent fits run side by side (``separation.nmf.tasks.run_at_once``)."""

import threading

import numpy as np
import pytest
import torch

import nmf_cases as nc
from demixstudio.audio.stft import StftConfig, stft
from demixstudio.errors import Cancelled
from demixstudio.jobs.context import JobContext, NullContext
from demixstudio.separation.nmf import engine, spectra
from demixstudio.separation.nmf.tasks import run_at_once

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def example():
    """The magnitude float32 (bins, frames) of 3 s of a cello at 16 kHz."""
    x = nc.excerpt("solo_instruments/cello-phrase.wav", (0.0, 3.0), nc.SR)
    return np.abs(stft(x[None].astype(np.float32), StftConfig.for_rate(nc.SR))[0])


def _learn(V, seed):
    def task(ctx):
        return spectra.learn_dictionary(V, 16, ctx, max_iter=30, seed=seed).numpy()
    return task


def test_fits_side_by_side_give_the_fits_run_alone_in_order(example):
    seeds = [3, 1, 4, 1, 5]
    alone = [_learn(example, s)(NullContext()) for s in seeds]
    threads = torch.get_num_threads()
    together = run_at_once([_learn(example, s) for s in seeds], NullContext(), CPU, "x")
    assert len(together) == len(seeds)
    for a, b in zip(alone, together):
        # The same updates; a fit alone may cut its frames into other chunks.
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)
    assert not np.allclose(together[0], together[2])  # other seeds, other templates
    assert torch.get_num_threads() == threads  # torch's count is given back


def test_a_task_sees_one_thread_and_the_caller_its_own():
    seen = run_at_once([lambda c: (engine.cpu_threads(), threading.current_thread().name)
                        for _ in range(4)], NullContext(), CPU, "x")
    assert engine.cpu_threads() == torch.get_num_threads()
    if torch.get_num_threads() > 1:  # side by side, on threads of their own
        assert all(n == 1 and name.startswith("nmf-task") for n, name in seen)


def test_progress_is_reported_by_the_caller_and_reaches_the_end():
    reports = []
    ctx = JobContext(on_progress=reports.append, min_interval_s=0.0)
    run_at_once([lambda c: c.progress(1, 1, "inside") for _ in range(3)], ctx, CPU, "tasks")
    assert reports and reports[-1].fraction == pytest.approx(1.0)
    if torch.get_num_threads() > 1:  # the tasks' own reports go nowhere
        assert {r.message for r in reports} == {"tasks"}


def test_a_cancel_stops_the_tasks_and_an_error_reaches_the_caller():
    finished = []

    def cancelling(c):
        c.cancel()
        c.check()

    def waiting(c):
        c.cancel_event.wait(10.0)  # the flag is shared: set by the task above
        c.check()
        finished.append(1)

    with pytest.raises(Cancelled):
        run_at_once([cancelling] + [waiting] * 7, JobContext(), CPU, "x")
    assert finished == []

    def failing(c):
        raise ValueError("a task's own error")

    with pytest.raises(ValueError, match="own error"):
        run_at_once([lambda c: c.check(), failing], NullContext(), CPU, "x")


def test_fits_on_this_thread_nests_and_leaves_other_threads_alone():
    outside = engine.cpu_threads()
    with engine.fits_on_this_thread():
        with engine.fits_on_this_thread():
            assert engine.cpu_threads() == 1
        assert engine.cpu_threads() == 1  # still inside the outer one
        seen = []
        t = threading.Thread(target=lambda: seen.append(engine.cpu_threads()))
        t.start()
        t.join()
        assert seen == [outside]  # another thread is not held
    assert engine.cpu_threads() == outside
