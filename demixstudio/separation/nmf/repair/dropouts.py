"""Dropouts: runs of exact digital zeros inside sound (a lost packet, a bad edit, a
damaged file), found in the waveform and filled by least-squares autoregressive
interpolation (Janssen, Veldhuis & Vries 1986; Godsill & Rayner 1998, ch. 5).

Why in the waveform and not in the spectrogram: a run of zeros shorter than the
STFT's window leaves no bin under the floor (every frame that holds it holds
sound too), so the spectral repair did not see a 50 ms dropout at all; marked as
missing whole frames, it is filled from the activations of frames that the run
itself has darkened, 6–12 dB too quiet, and the frames' other samples are lost
with it. The samples around a run are known exactly, and a short stretch of
audio is well predicted by an all-pole model of its neighbourhood: the missing
samples are those that make the model's prediction error over the run and the
``order`` samples after it least. Only the run's samples change (and those between
two runs closer than the model's order, which are filled as one).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.linalg import solve_toeplitz

#: Shortest run of exact zeros taken for a dropout (s). A low, quiet tone quantised
#: to 16 bits stays at zero for a few samples at each zero crossing (a 20 Hz sine
#: 30 steps high: about 12 samples at 44.1 kHz); a millisecond is well above that.
MIN_S = 0.001
#: The sound on each side that a run must have to be a dropout (s), and how loud:
#: its RMS within this many dB of the channel's peak, and at least this many
#: quanta (the smallest non-zero |sample|, 2⁻¹⁵ in a 16-bit file). A run with
#: silence beside it is a pause, not a loss; and a quiet passage a few steps of a
#: 16-bit file high has runs of zeros of its own (the SiSEC speakers of
#: ../shared/audio: 1–20 ms runs between words, their sides 2–7 quanta).
FLANK_S = 0.010
FLANK_DB = -60.0
FLANK_QUANTA = 32.0
#: The autoregressive model's order: three times the run's length plus two
#: (Janssen et al.'s rule), within these bounds (s of audio).
ORDER_MIN_S = 0.002
ORDER_MAX_S = 0.020
#: Audio on each side the model is estimated on: this many times its order, and
#: at least CONTEXT_MIN_S.
CONTEXT_ORDERS = 4
CONTEXT_MIN_S = 0.050
#: Janssen's re-estimations of the model on the neighbourhood with the run filled.
#: One gained 1–2 dB of SNR on 2–50 ms runs (the ten recordings of
#: bench_repair_set.py at 16 kHz, four places each: medians 12.0 / 15.6 / 15.0 /
#: 12.7 / 6.6 → 13.9 / 16.1 / 16.6 / 12.6 / 7.1 dB at 2 / 5 / 10 / 20 / 50 ms); a
#: second, about nothing more.
ITERATIONS = 1
#: Runs closer than this many model orders are filled as one (the samples between
#: them with it), so that no run's fill reads another's zeros as sound.
MERGE_ORDERS = 1
#: Samples scanned at a time when looking for runs (an hour's zero mask is not made).
SCAN_BLOCK = 1 << 20


def find_dropouts(x: np.ndarray, sr: int, max_s: float) -> list[tuple[int, int]]:
    """The dropouts of one channel: [start, stop) sample runs, in order.

    x : float (samples,). A dropout is a run of exact zeros at least :data:`MIN_S`
    and at most ``max_s`` long, not touching either end, with :data:`FLANK_S` of
    sound on each side whose RMS is within :data:`FLANK_DB` of the channel's peak
    and at least :data:`FLANK_QUANTA` quanta.
    """
    n = x.shape[0]
    lo, hi = max(1, int(round(MIN_S * sr))), int(round(max_s * sr))
    if hi < lo or n == 0:
        return []
    peak, quantum = 0.0, np.inf
    for s in range(0, n, SCAN_BLOCK):
        mag = np.abs(x[s:s + SCAN_BLOCK])
        peak = max(peak, float(mag.max()))
        nonzero = mag[mag > 0]
        if nonzero.size:
            quantum = min(quantum, float(nonzero.min()))
    if peak == 0.0:
        return []
    need = max(peak * 10.0 ** (FLANK_DB / 20.0), FLANK_QUANTA * quantum)
    flank = max(1, int(round(FLANK_S * sr)))
    out = []
    for a, b in _zero_runs(x, lo):
        if a == 0 or b == n or b - a > hi:
            continue
        left, right = x[max(0, a - flank):a], x[b:b + flank]
        if min(_rms(left), _rms(right)) >= need:
            out.append((a, b))
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _zero_runs(x: np.ndarray, shortest: int = 1) -> Iterator[tuple[int, int]]:
    """[start, stop) of every run of exact zeros in ``x`` (samples,) at least
    ``shortest`` long, a block at a time; a run across a block's end is carried into
    the next. (Shorter runs are dropped in bulk: a quiet 16-bit recording has a zero
    at many of its crossings, millions an hour.)"""
    n = x.shape[0]
    open_at = -1  # the start of a run that reached the previous block's end
    for s in range(0, n, SCAN_BLOCK):
        z = x[s:s + SCAN_BLOCK] == 0
        end = s + z.size
        edges = np.flatnonzero(np.diff(z.view(np.int8), prepend=np.int8(0),
                                       append=np.int8(0))) + s
        starts, stops = edges[::2], edges[1::2]
        if open_at >= 0:
            if starts.size and starts[0] == s:
                starts[0] = open_at
            else:
                if s - open_at >= shortest:
                    yield open_at, s
            open_at = -1
        keep = (stops - starts >= shortest) | (stops == end)
        for a, b in zip(starts[keep].tolist(), stops[keep].tolist()):
            if b == end and b < n:
                open_at = a
            elif b - a >= shortest:
                yield a, b


def merged_runs(runs: list[tuple[int, int]], sr: int) -> list[tuple[int, int]]:
    """``runs`` with those closer than :data:`MERGE_ORDERS` of the longer one's model
    order joined (the samples between them filled too)."""
    out: list[tuple[int, int]] = []
    for a, b in runs:
        if out and a - out[-1][1] < MERGE_ORDERS * order_for(max(b - a, out[-1][1] -
                                                                  out[-1][0]), sr):
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def order_for(m: int, sr: int) -> int:
    """The model order for a run of ``m`` samples (see :data:`ORDER_MIN_S`)."""
    return int(np.clip(3 * m + 2, round(ORDER_MIN_S * sr), round(ORDER_MAX_S * sr)))


def interpolate(x: np.ndarray, a: int, b: int, order: int, context: int,
                iterations: int = ITERATIONS) -> np.ndarray:
    """The samples [a, b) of ``x`` (float (samples,)) by least-squares AR
    interpolation: float64 (b − a,).

    The model (``order`` coefficients) is fitted by the autocorrelation method on
    up to ``context`` samples each side, Hann-weighted, the two sides' correlations
    summed; then ``iterations`` times again on the whole neighbourhood with the run
    as filled (Janssen et al.'s iteration), and the run filled again.
    """
    left = np.asarray(x[max(0, a - context):a], dtype=np.float64)
    right = np.asarray(x[b:b + context], dtype=np.float64)
    u = _least_squares_fill(x, a, b, _autocorrelation(left, order)
                            + _autocorrelation(right, order))
    for _ in range(iterations):
        u = _least_squares_fill(x, a, b, _autocorrelation(np.concatenate([left, u, right]),
                                                          order))
    return u


def _least_squares_fill(x: np.ndarray, a: int, b: int, r: np.ndarray) -> np.ndarray:
    """The samples [a, b) of ``x`` that make the prediction error of the AR model
    whose autocorrelation is ``r`` (float64 (p + 1,)) least: float64 (b − a,).

    With the prediction-error filter f = [1, −a_1 … −a_p], the error over the
    samples [a, b + p) is e = e₀ + A u, where e₀ is the error with the run at zero
    and A u the run's own part; the u that makes |e|² least solves
    (AᵀA) u = −Aᵀ e₀, and AᵀA is the symmetric Toeplitz matrix of f's
    autocorrelation (banded: lags up to p), solved by Levinson's recursion.
    """
    m, p = b - a, r.size - 1
    if not r[0] > 0:
        return np.zeros(m)
    r = r.copy()
    # A little white noise in the model (1e-6 of the power) keeps the normal
    # equations well posed on a pure tone or a short context.
    r[0] *= 1.0 + 1e-6
    filt = np.concatenate([[1.0], -solve_toeplitz(r[:p], r[1:p + 1])])
    # e₀ over [a, b + p): the error filter run over [a − p, b + p) with the run at 0.
    seg = np.zeros(m + 2 * p)
    lo = max(0, a - p)
    seg[p - (a - lo):p] = x[lo:a]
    tail = np.asarray(x[b:b + p], dtype=np.float64)
    seg[p + m:p + m + tail.size] = tail
    e0 = np.convolve(seg, filt, mode="full")[p:m + 2 * p]
    # (Aᵀ e₀)_j = Σ_l f_l e₀[j + l].
    rhs = -np.correlate(e0, filt, mode="valid")[:m]
    col = np.zeros(m)
    rf = np.correlate(filt, filt, mode="full")[p:]  # lags 0 … p
    col[:min(m, p + 1)] = rf[:min(m, p + 1)]
    return solve_toeplitz(col, rhs)


def _autocorrelation(x: np.ndarray, p: int) -> np.ndarray:
    """Biased autocorrelation of Hann-weighted ``x`` at lags 0 … p: float64 (p + 1,)
    (zeros where ``x`` is shorter)."""
    out = np.zeros(p + 1)
    if x.size < 2:
        return out
    w = x * np.hanning(x.size + 2)[1:-1]
    nfft = 1 << int(np.ceil(np.log2(2 * x.size)))
    f = np.fft.rfft(w, nfft)
    ac = np.fft.irfft(f * np.conj(f), nfft)[:p + 1]
    out[:min(p + 1, ac.size)] = ac[:p + 1]
    return out


def fill_dropouts(mix: np.ndarray, sr: int, max_s: float) -> tuple[np.ndarray, int, float]:
    """``mix`` float32 (channels, samples) with its dropouts filled (the same array
    when there are none, else a copy), how many runs were filled, and their total
    length in seconds (summed over channels)."""
    out = mix
    count, total = 0, 0
    for c in range(mix.shape[0]):
        runs = merged_runs(find_dropouts(mix[c], sr, max_s), sr)
        if not runs:
            continue
        if out is mix:
            out = np.array(mix, dtype=np.float32, copy=True)
        for a, b in runs:
            p = order_for(b - a, sr)
            ctx = max(CONTEXT_ORDERS * p, int(round(CONTEXT_MIN_S * sr)))
            # Runs are filled in order, so an earlier one is sound to a later one's
            # left context; a later one's zeros may reach into the right context,
            # which they pull toward silence only a little at CONTEXT_ORDERS orders.
            out[c, a:b] = interpolate(out[c], a, b, p, ctx).astype(np.float32)
            count += 1
            total += b - a
    return out, count, total / float(sr)
