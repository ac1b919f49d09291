"""The fill's phase: fast Griffin–Lim on the missing bins only (the observed ones
keep the input's, and so do missing ones where a filter only turned the source
down: :data:`OWN_PHASE_DB`), on pieces of a block of frames around what is missing,
up to :data:`GL_PIECES_AT_ONCE` at once on the CPU's threads, cross-faded at the
cuts; each channel gets its share of the fill."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np
import torch
from scipy.ndimage import binary_opening

from demixstudio.audio.stft import STFT_BLOCK, istft, stft
from demixstudio.errors import Cancelled
from demixstudio.jobs.context import JobContext
from demixstudio.separation.nmf import engine


GL_PIECES_AT_ONCE = 4


def synthesise(mix: np.ndarray, cfg, W: np.ndarray, H: np.ndarray, observed, iters: int,
               block: int, ctx: JobContext, skirt: np.ndarray | None = None) -> np.ndarray:
    """The input with its missing bins filled by ``W H``: float32 (channels, samples).

    W float32 (bins, K), H float32 (K, frames): the model of the channels' summed
    magnitude, which each channel shares (see :func:`channel_shares`); ``observed``
    the blocks of :meth:`.method.Repair._observed` as :func:`pack_observed` packs
    them. Only the stretches
    around frames with a missing bin are synthesised again (:func:`fill_stretches`),
    at most ``block`` / :data:`GL_PIECES_AT_ONCE` frames at a time, that many pieces
    at once (see the module's docstring); elsewhere the output is the input, so a
    short gap in an hour costs the gap's Griffin–Lim, not the hour's. ``skirt``: see
    :func:`griffin_lim`.
    """
    n = mix.shape[1]
    hop = cfg.hop
    nfr = cfg.frames(n)
    fade = max(1, cfg.n_fft // hop)  # frames cross-faded on each side of a cut
    margin = 3 * fade  # context beyond the fade, so Griffin–Lim's own edges fall outside
    bins = cfg.bins
    starts = np.cumsum([0] + [o.shape[1] for o in observed])

    def observed_frames(a: int, b: int) -> np.ndarray:
        parts = [o[:, max(a, s) - s:min(b, s + o.shape[1]) - s]
                 for o, s in zip(observed, starts) if s < b and s + o.shape[1] > a]
        return np.unpackbits(np.concatenate(parts, axis=1), axis=0, count=bins).view(bool)

    need = np.concatenate([~np.unpackbits(o, axis=0, count=bins).view(bool).all(axis=0)
                           for o in observed])
    # Two fades of padding keep every frame with a fill clear of the cross-fades.
    pieces = fill_stretches(need, 2 * fade, 2 * margin, max(4 * fade, block // GL_PIECES_AT_ONCE))
    out = np.array(mix, dtype=np.float32, copy=True)
    nb = len(pieces)
    F = fade * hop
    rounds = [0] * nb  # Griffin–Lim rounds done per piece, for the progress
    stop = threading.Event()

    def tick(k: int, i: int) -> None:  # in a worker: no progress reports, only cancel
        rounds[k] = i
        if stop.is_set() or ctx.cancelled:
            raise Cancelled("cancelled by the user")

    def change(k: int) -> tuple[int, int, np.ndarray]:
        """Piece ``k``'s samples [s0, s1) and what it adds to the input there."""
        t0, t1 = pieces[k]
        a, b = max(0, t0 - margin), min(nfr, t1 + margin)
        # Local frame j of the stretch [s0, s1) is global frame a + j (frames are
        # centred on multiples of the hop).
        s0 = a * hop
        s1 = n if b == nfr else s0 + (b - a - 1) * hop
        y = griffin_lim(mix[:, s0:s1], cfg, W @ H[:, a:b], ~observed_frames(a, b), iters,
                        lambda i: tick(k, i), skirt)
        s = np.arange(s0, s1, dtype=np.float64)
        w = np.ones(s1 - s0, dtype=np.float64)
        if t0 > 0:
            w *= np.clip((s - (t0 * hop - F)) / (2 * F), 0.0, 1.0)
        if t1 < nfr:
            w *= 1.0 - np.clip((s - (t1 * hop - F)) / (2 * F), 0.0, 1.0)
        # Pieces of one stretch share their cuts (their weights sum to one there); at
        # a stretch's ends the rest of the weight stays with the input.
        return s0, s1, (w * (y - mix[:, s0:s1])).astype(np.float32)

    workers = max(1, min(GL_PIECES_AT_ONCE, engine.cpu_threads(), nb))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phase") as pool:
        running: dict = {}
        done: dict[int, tuple] = {}
        submitted = added = 0
        try:
            while added < nb:
                while submitted < nb and len(running) + len(done) < workers:
                    running[pool.submit(change, submitted)] = submitted
                    submitted += 1
                finished, _ = wait(running, timeout=0.1, return_when=FIRST_COMPLETED)
                for f in finished:
                    done[running.pop(f)] = f.result()
                # In order, so that overlapping pieces sum the same way every run.
                while added in done:
                    s0, s1, d = done.pop(added)
                    out[:, s0:s1] += d
                    added += 1
                ctx.progress(sum(rounds) + added, nb * (iters + 1), "phase")
        finally:
            stop.set()
    return out


def pack_observed(observed: list[torch.Tensor]) -> list[np.ndarray]:
    """The observed bins, bool (bins, B) blocks, packed eight frequencies to a byte
    (``np.packbits`` along axis 0): uint8 (⌈bins / 8⌉, B).

    The synthesis reads them a piece at a time; whole and unpacked they are as large
    as the magnitude's bins (an hour of 44.1 kHz audio: 0.32 GB, against 40 MB)."""
    return [np.packbits(o.cpu().numpy(), axis=0) for o in observed]


def fill_stretches(need: np.ndarray, pad: int, join: int, block: int
                   ) -> list[tuple[int, int]]:
    """The frame ranges [t0, t1) to synthesise again: the frames where ``need`` (bool
    (frames,)) is set, widened by ``pad`` frames each side, stretches less than ``join``
    frames apart joined into one, each cut into pieces of at most ``block`` frames."""
    idx = np.flatnonzero(need)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > 2 * pad + join)
    firsts = np.concatenate([[idx[0]], idx[breaks + 1]])
    lasts = np.concatenate([idx[breaks], [idx[-1]]])
    pieces = []
    for f, l in zip(firsts, lasts):
        r0, r1 = max(0, int(f) - pad), min(need.size, int(l) + 1 + pad)
        cuts = list(range(r0, r1, block)) + [r1]
        pieces += list(zip(cuts[:-1], cuts[1:]))
    return pieces


# Fast Griffin–Lim (Perraudin, Balazs & Søndergaard 2013): each round steps on from
# the consistent estimate by this fraction of its last change. 0.99 is the paper's
# choice; 10 rounds then match the plain algorithm's 30 and 15 pass them (measured:
# the spectral convergence of an oracle magnitude, NMF_NOTES "Session 51").
GL_MOMENTUM = 0.99

#: A missing bin in which the input is at most this far (dB) under the fill keeps the
#: input's phase (see :func:`griffin_lim`).
OWN_PHASE_DB = 40.0


#: The smallest magnitude whose phase is read off it (float32's smallest normal
#: number is 1.2e-38).
MIN_PHASE_MAG = 1e-30


def griffin_lim(x: np.ndarray, cfg, fill_mag: np.ndarray, missing: np.ndarray, iters: int,
                tick: Callable[[int], None], skirt: np.ndarray | None = None) -> np.ndarray:
    """Fast Griffin–Lim on the missing bins only; observed bins keep the input's STFT.

    x float32 (channels, samples); fill_mag (bins, frames of x): the fill of the
    channels' summed magnitude, shared out among them (:func:`channel_shares`);
    missing bool (bins, frames); ``tick(i)`` is called before round i (it may raise to
    stop); ``skirt`` float32 (bins,) or None: where it is above 0, a missing bin's fill
    is the input's own magnitude in each channel times it (a band limit's skirt:
    :func:`.skirt.skirt_gains`), and so keeps the input's phase.

    A missing bin in which the input is no more than :data:`OWN_PHASE_DB` under the
    fill keeps the input's phase and is left out of the rounds: the source is still
    there, turned down by a filter's skirt (a low-pass's transition band, a
    resampler's), and its phase is the source's (shifted by the filter's, alike in
    every frame). Griffin–Lim has to find the phase only where nothing is left.

    Measured on the ten recordings of ``bench_repair_set.py`` at 44.1 kHz low-passed
    at 8 and 16 kHz (``--lowpass``), where the original has something above the cut
    (12 repairs): with the band given, the mean reduction of the log-spectral
    distance went from 31.7 to 35.5 % (scikit-learn told the bins, with the input's
    phase: 34.1 %; a resampled speaker's 8 kHz cut from 3.5 to 20.3 %; none worse);
    with the band found, from 27.3 to 27.7 % (a found band starts past most of the
    skirt). The set's six damages at either rate (60 repairs each): +0.1 point.
    Speech and instruments through a 300–3400 Hz phone line (causal and zero-phase
    filters, 16 and 44.1 kHz; 7 recordings): with hiss 30 or 50 dB under the
    signal, each setting's mean within 0.6 point of before (where the hiss is within
    40 dB of the fill its phase is kept, and does about as well as Griffin–Lim's);
    without hiss, +0.2 to +1.3 points; a singer's repairs 0–3 points lower. At 60 dB
    the low-passes gained a little more and the singer lost 3–5 points.

    A painted bin keeps its phase by the same rule: it holds the source under the
    painted sound. Speech under a 0.3 s burst of noise over 1–4 kHz, painted (as
    ``test_repair_replaces_a_painted_burst`` makes it): the distance near the burst
    1.89 dB with Griffin–Lim's phases there, 1.80 with the input's; under a burst
    16 dB quieter, 1.89 and 1.75.
    """
    n = x.shape[1]
    # Y starts as the input's STFT and only its missing bins are ever written, so the
    # observed ones keep their own values; the loop reuses its buffers (fresh
    # full-size arrays each round cost as much again in page faults).
    Y = stft(x, cfg)
    mag = np.abs(Y)
    fill_mag = cap_narrow_holes(fill_mag, mag.sum(axis=0), missing)
    fill = fill_mag[None] * channel_shares(mag, missing)  # (channels, bins, frames)
    if skirt is not None:
        rows = np.flatnonzero(skirt > 0)
        fill[:, rows] = np.where(missing[None, rows], mag[:, rows] * skirt[rows, None],
                                 fill[:, rows])
    # The missing bins that keep their own phase, set in place: Y / |Y| · fill. Not
    # those of denormal size (digital silence's rounding): numpy divides a complex
    # number through the divisor's reciprocal, which overflows there, and the output
    # came out NaN (a dog's bark followed by zeros, cut to 400–1600 Hz).
    kept = (np.broadcast_to(missing[None], Y.shape)
            & (mag * np.float32(10.0 ** (OWN_PHASE_DB / 20.0)) >= fill)
            & (mag > MIN_PHASE_MAG))
    np.divide(Y, mag, out=Y, where=kept)
    np.multiply(Y, fill, out=Y, where=kept)
    where = np.broadcast_to(missing[None], Y.shape) & ~kept  # the bins the rounds set
    del kept
    rng = np.random.default_rng(0)
    phase = np.exp(2j * np.pi * rng.random(fill_mag.shape)).astype(np.complex64)
    np.copyto(Y, fill * phase[None], where=where)
    del phase
    if iters == 0:
        return istft(Y, n, cfg)
    a = GL_MOMENTUM
    C = np.empty_like(Y)  # this round's estimate, with the fill's magnitude
    last = Y.copy()  # the last round's (only its missing bins are read)
    # numpy multiplies and divides complex64 by a real in complex arithmetic: the
    # rescaling goes through one real ratio, and the step through float32 views of
    # the real and imaginary parts (a 44.1 kHz minute: 23 → 8 ms and 25–50 → 6–10 ms
    # a round, of about 90).
    for i in range(iters):
        tick(i)
        stft(istft(Y, n, cfg, block=STFT_BLOCK), cfg, out=C)
        np.abs(C, out=mag)
        np.maximum(mag, 1e-20, out=mag)
        np.divide(fill, mag, out=mag)
        C *= mag
        # The next point is C + a (C − last), made in place in last's buffer.
        lv, cv = last.view(np.float32), C.view(np.float32)
        np.subtract(cv, lv, out=lv)
        lv *= a
        lv += cv
        np.copyto(Y, last, where=where)
        last, C = C, last
    # The output is the last estimate itself, not the step beyond it.
    np.copyto(Y, last, where=where)
    tick(iters)
    return istft(Y, n, cfg)


#: A run of missing bins in one frame at most this many bins wide is a narrow hole
#: (see :func:`cap_narrow_holes`): twice the Hann window's main lobe.
HOLE_BINS = 8
#: Observed bins read on each side of a narrow hole.
HOLE_SIDE_BINS = 4


def cap_narrow_holes(fill_mag: np.ndarray, mag: np.ndarray, missing: np.ndarray
                     ) -> np.ndarray:
    """``fill_mag`` float32 (bins, frames) no louder, in a narrow hole (a run of at
    most :data:`HOLE_BINS` missing bins in a frame), than the loudest of the
    :data:`HOLE_SIDE_BINS` observed bins on either side of the hole in that frame;
    ``mag`` float32 (bins, frames): the input's magnitude (channels summed);
    ``missing`` bool (bins, frames). Returns ``fill_mag`` itself when there is no
    narrow hole, else a capped copy.

    Why: the fill comes from activations fitted on the frame's present bins, and the
    KL divergence weighs a bin by its size, so in a quiet frame the fit follows the
    loud bins and leaves the model 40–60 dB over the quiet ones. A pair of bins under
    the floor in a pause (a LibriSpeech speaker at −123 dB under the peak, the bins
    beside them at −107 to −113 dB) was filled at −61 dB: a faint whistle in a
    silence, and that excerpt, undamaged, came out of the repair 0.085 dB from
    itself in log-spectral distance (0.005 dB capped).
    Something that narrow is either a null, quieter than what is around it, or a
    painted whistle or hum, to be replaced by what is around it; a wide gap, whose
    inside has no present bins near it, is not capped.
    """
    if not missing.any():
        return fill_mag
    wide = binary_opening(missing, structure=np.ones((HOLE_BINS + 1, 1), dtype=bool))
    narrow = missing & ~wide
    del wide
    cols = np.flatnonzero(narrow.any(axis=0))  # the frames with a narrow hole
    if not cols.size:
        return fill_mag
    out = fill_mag.copy()
    # A few frames at a time: the bins' indices and the side levels are as large as
    # the piece for each frame taken (an hour's repair peaked 0.2 GB higher with
    # every frame of its pieces at once).
    for c in range(0, cols.size, HOLE_FRAMES):
        f = cols[c:c + HOLE_FRAMES]
        rows, at = np.nonzero(narrow[:, f])
        side = _hole_sides(mag[:, f], missing[:, f], rows, at)
        out[rows, f[at]] = np.minimum(fill_mag[rows, f[at]], side)
    return out


#: Frames capped at a time by :func:`cap_narrow_holes`.
HOLE_FRAMES = 128


def _hole_sides(mag: np.ndarray, missing: np.ndarray, rows: np.ndarray, cols: np.ndarray
                ) -> np.ndarray:
    """float32 (n,): for the missing bins at ``rows``, ``cols`` (int (n,) each) of
    ``mag`` float32 (bins, frames), the loudest of the :data:`HOLE_SIDE_BINS` observed
    bins next to each on either side in its frame, below and above the run of
    ``missing`` (bool (bins, frames)) bins it lies in (0 on a side with none)."""
    bins = missing.shape[0]
    k = np.arange(bins, dtype=np.int32)[:, None]
    # Each bin's nearest observed bin at or below it and at or above it (-1 and
    # ``bins`` where there is none), so a hole's bins read its two edges.
    below = np.maximum.accumulate(np.where(missing, np.int32(-1), k), axis=0)[rows, cols]
    above = np.minimum.accumulate(np.where(missing, np.int32(bins), k)[::-1],
                                  axis=0)[::-1][rows, cols]
    seen = np.where(missing, np.float32(0.0), mag).astype(np.float32, copy=False)
    # The loudest observed bin among the r at and below each bin (down), and at and
    # above it (up), by shifted maxima along the rows.
    down, up = seen.copy(), seen.copy()
    for j in range(1, HOLE_SIDE_BINS):
        np.maximum(down[j:], seen[:-j], out=down[j:])
        np.maximum(up[:-j], seen[j:], out=up[:-j])
    return np.maximum(np.where(below >= 0, down[np.maximum(below, 0), cols], 0),
                      np.where(above < bins, up[np.minimum(above, bins - 1), cols], 0)
                      ).astype(np.float32)


def channel_shares(mag: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Each channel's share of the fill, float32 (channels, 1, frames), summing to one
    over the channels: its share of the frame's observed magnitude.

    mag float32 (channels, bins, frames), |STFT| of the input; missing bool (bins, frames)

    The fill models the channels' summed magnitude. Split evenly, it put a centred
    fill into a recording panned to one side: at 16 kHz, speech hard left cut to
    400–1600 Hz got fill in its silent right channel, and with the right channel at
    0.3 of the left the right's log-spectral distance fell by 31 % against the
    left's 36 % (a cello's by 29 % against 47 %); shared this way, both by 37 % (the
    cello's by 44 %, as in mono). A frame's present bins tell how its sound is
    panned. Frames with nothing observed (or silent) take the stretch's overall
    share; a mono input's share is 1.
    """
    c = mag.shape[0]
    if c == 1:
        return np.ones((1, 1, mag.shape[2]), dtype=np.float32)
    present = ~missing
    per_frame = np.einsum("cft,ft->ct", mag, present, dtype=np.float64)  # (c, frames)
    total = per_frame.sum(axis=0)
    overall = per_frame.sum(axis=1)
    fallback = overall / overall.sum() if overall.sum() > 0 else np.full(c, 1.0 / c)
    share = np.where(total > 0, per_frame / np.maximum(total, 1e-300), fallback[:, None])
    return share.astype(np.float32)[:, None, :]
