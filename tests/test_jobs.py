"""The job context: progress within stages, ETA, cooperative cancel."""

from __future__ import annotations

import threading
import time

import pytest

from demixstudio.errors import Cancelled
from demixstudio.jobs import JobContext


def test_stages_map_progress_and_eta():
    seen = []
    ctx = JobContext(on_progress=seen.append, min_interval_s=0.0)
    with ctx.stage(0.0, 0.5, "first"):
        for i in range(5):
            ctx.progress(i + 1, 5)
    assert abs(seen[-1].fraction - 0.5) < 1e-9 and seen[-1].message == "first"
    with ctx.stage(0.5, 1.0, "second"):
        with ctx.stage(0.0, 0.5):
            ctx.progress(1, 1)
        assert abs(ctx.fraction - 0.75) < 1e-9
        time.sleep(0.25)
        ctx.progress(0.5, 1.0)  # never goes backwards
    assert abs(ctx.fraction - 0.75) < 1e-9
    eta = ctx.eta()
    assert eta is not None and 0 < eta < 10 * ctx.elapsed()
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)


def test_cancel_from_another_thread_raises_at_next_progress():
    ctx = JobContext()
    threading.Timer(0.05, ctx.cancel).start()
    with pytest.raises(Cancelled):
        for i in range(10_000):
            ctx.progress(i, 10_000)
            time.sleep(0.001)
    assert ctx.cancelled


def test_method_honours_cancel(rng):
    from demixstudio.separation import get_method
    m = get_method("ica")
    ctx = JobContext()
    ctx.cancel()
    mix = rng.standard_normal((2, 20000)).astype("float32")
    with pytest.raises(Cancelled):
        m.separate(mix, 16000, m.Params(), None, ctx)
