"""How many semitones a hum is away from its target in the mixture (``nmf-hum``'s
``transpose_search``).

People hum a part in their own register: a man an octave under a soprano, a
whistle an octave or two over a bass line, anyone a few semitones off. A
hint's templates at the wrong pitch describe notes the target never plays,
and `nmf-hum` then separates poorly (measured: the benchmark's cello hint 3
semitones high takes the cello's SDR from 6–9 dB to 0 dB). The user can say
how far off the hint is (``transpose``); this module looks for it.

The mixture's own templates are learned first (a plain NMF of a sample of
its frames), then the hint, transposed by each candidate number of
semitones, is explained by those templates with the templates held fixed.
That fit is convex in the activations, so each candidate's divergence is a
property of the candidate, not of a random start (the templates are, so the
costs of a few of them are averaged); the transposition with the lowest
divergence per unit of hint wins. Only the band that every candidate still
covers takes part (a spectrum moved down leaves its top empty, which would
otherwise count against every downward move), which is also where the
harmonics that fix a pitch are, and none above :data:`TOP_HZ`.

What it cannot tell: whether the mixture explains the moved hint with the
target or with another source of the same kind in another register. With two
speakers it moves a hint of the higher voice down to the lower one (6–7
semitones, every time on the benchmark's speech mixture), and a cello phrase
can land on the saxophone's notes: so ``nmf-hum`` searches only ±3 semitones
by default (the speakers are out of reach; the cello is not, see ``hum``), and
the result is reported with the layers (``extra["transposition"]``). Measured with
the benchmark's hints (other excerpts of the target, seeds 0–2): a hint made 3
semitones high was moved back down 3 (±1) in 9 of 12 runs on the four 7-s
mixtures (the misses: the two speakers) and in 6 of 12 on their first 4 s;
unmoved hints were moved by 1–3 semitones in several runs, which is sometimes
right (another excerpt plays other notes) and sometimes costs the separation.
A range under an octave avoids octave errors (a harmonic spectrum an octave
away shares half its partials with the original): with ±12 the voice's hint
was moved down an octave in some runs.
"""

from __future__ import annotations

import numpy as np
import torch

from demixstudio.audio.stft import StftConfig
from demixstudio.jobs.context import JobContext
from demixstudio.separation.nmf import engine, spectra

#: Frames of the mixture that the search looks at, at most (evenly spread runs of
#: frames: an hour of audio costs what a minute does).
SAMPLE_FRAMES = 2048
#: Frames of the hint, at most: each is fitted once per candidate.
HINT_FRAMES = 1024
#: Length of each run of consecutive frames in that sample.
RUN_FRAMES = 32
#: Templates of the mixture that explain the hint.
RANK = 48
#: Dictionaries of the mixture (different random starts) whose costs are averaged:
#: one dictionary's local optimum can favour a wrong candidate.
RESTARTS = 5
#: Multiplicative updates of the mixture's templates and of the hint's activations.
ITERATIONS = 100
#: The top of the band the search looks at (Hz): the band of a 16 kHz recording, the
#: rate it was measured and tuned at, which holds the partials that fix a voice's or an
#: instrument's pitch. At 44.1 kHz the whole band took 6.2 s for a hint of the
#: benchmark's voice against 2.7 s for this one (2.2 s at 16 kHz), and the benchmark's
#: hum at 44.1 kHz (seeds 0–2, hints as they are and 3 semitones high) moved every hint
#: the same way with either, to the same SDRs.
TOP_HZ = 8000.0


def top_bin(sr: int, n_fft: int) -> int:
    """The first bin above :data:`TOP_HZ` in an STFT of ``n_fft`` at ``sr``."""
    return int(TOP_HZ / (sr / n_fft)) + 1


def run_starts(total: int, limit: int = SAMPLE_FRAMES) -> tuple[list[int], int]:
    """Where :func:`sample_frames`' runs of frames start among ``total``, and their
    length: one run of all of them when they are at most ``limit``, else runs of
    :data:`RUN_FRAMES` spread evenly."""
    if total <= limit:
        return [0], total
    runs = max(1, limit // RUN_FRAMES)
    run = limit // runs
    return np.linspace(0, total - run, runs).astype(np.int64).tolist(), run


def sample_frames(blocks: list[torch.Tensor] | list[np.ndarray], limit: int = SAMPLE_FRAMES
                  ) -> np.ndarray:
    """At most ``limit`` frames of the (bins, B) blocks, as float32 (bins, ≤ limit):
    all of them when they are fewer, else runs of :data:`RUN_FRAMES` spread evenly."""
    widths = [b.shape[1] for b in blocks]
    total = sum(widths)
    starts, run = run_starts(total, limit)
    edges = np.cumsum([0] + widths)
    out = []
    for t0 in starts:
        t, t1 = t0, t0 + run
        while t < t1:
            i = int(np.searchsorted(edges, t, side="right")) - 1
            b = blocks[i]
            a, e = t - int(edges[i]), min(t1, int(edges[i + 1])) - int(edges[i])
            piece = b[:, a:e]
            out.append(piece.cpu().numpy() if isinstance(piece, torch.Tensor) else piece)
            t += e - a
    return np.ascontiguousarray(np.concatenate(out, axis=1), dtype=np.float32)


def sampled_magnitude(x: np.ndarray, cfg: StftConfig, limit: int = SAMPLE_FRAMES
                      ) -> np.ndarray:
    """The frames :func:`sample_frames` would take of the channel-summed magnitude of
    ``x`` float32 (channels, samples) on ``cfg``, as float32 (bins, ≤ ``limit``), made
    from those frames only: the whole spectrogram on ``cfg`` is never built (the hum
    searches on a longer window than it may fit on)."""
    starts, run = run_starts(cfg.frames(x.shape[1]), limit)
    out = np.empty((cfg.bins, len(starts) * run), dtype=np.float32)
    for i, t0 in enumerate(starts):
        spectra.magnitude_into(x, cfg, t0, out[:, i * run:(i + 1) * run])
    spectra.floor_magnitude(out)
    return out


def search(hint: np.ndarray, mixture: np.ndarray, candidates: np.ndarray, ctx: JobContext, *,
           seed: int = 0, device: torch.device = torch.device("cpu"),
           precision: str = "float32", top_bin: int | None = None) -> tuple[float, np.ndarray]:
    """The transposition of ``hint`` that the mixture's templates explain best.

    hint, mixture : float32 (bins, frames) magnitudes in the same STFT
    candidates : semitones to try, (n,)
    top_bin : only the bins under this one take part (None: all of them)
    Returns (the best candidate, the divergence per unit of hint of every candidate (n,)).
    """
    candidates = np.asarray(candidates, dtype=np.float64)
    F = mixture.shape[0]
    # The band every candidate still covers (a move down by s empties the top s semitones).
    band = max(8, int(F * 2.0 ** (min(0.0, float(candidates.min())) / 12.0)))
    if top_bin is not None:
        band = max(8, min(band, int(top_bin)))
    Vm = np.array(mixture[:band], dtype=np.float32)
    blocks = []
    for s in candidates:
        Vs = spectra.transpose_magnitude(hint, float(s))[:band]
        spectra.floor_magnitude(Vs)
        blocks.append(torch.as_tensor(np.ascontiguousarray(Vs)).to(device))
    total = np.array([engine.sum64(V) for V in blocks])
    cost = np.zeros(len(blocks))
    for r in range(RESTARTS):
        with ctx.stage(r / RESTARTS, (r + 0.5) / RESTARTS, "learning the mixture's templates"):
            Wm = spectra.learn_dictionary(Vm, min(RANK, max(2, Vm.shape[1] // 2)), ctx,
                                          max_iter=ITERATIONS, tol=0.0, seed=seed + 31 * r,
                                          device=device, precision=precision,
                                          message="learning the mixture")
        H = spectra.init_activations(blocks, Wm.shape[1], seed + 31 * r)
        with ctx.stage((r + 0.5) / RESTARTS, (r + 1) / RESTARTS, "transposing the hint"):
            # Activations only: the candidates' frames are independent of each other.
            engine.fit(blocks, Wm, H, ctx, fixed_w=range(Wm.shape[1]), max_iter=ITERATIONS,
                       tol=0.0, check_every=ITERATIONS, precision=precision,
                       message="transposing the hint")
        cost += [engine.beta_divergence(V, Wm @ h, 1.0) for V, h in zip(blocks, H)] / total
    cost /= RESTARTS
    return float(candidates[int(np.argmin(cost))]), cost
