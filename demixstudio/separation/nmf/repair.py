"""``repair``: bandwidth expansion and missing-data filling from an example.

A dictionary is learned on a full-band example recording of the same kind of
sound (``hints.examples``). The input's activations are fitted on the bins
that exist only (KL with a 0/1 weight per bin), and the model ``W H`` fills
the bins that don't: a band-limited recording brought back to full band, a
gap in time–frequency filled (Smaragdis, Raj & Shashanka 2011). Frames with
nothing observed take the activations of their nearest observed neighbours.
The filled bins get their phase by fast Griffin–Lim iterations (with momentum)
in which the observed bins keep their own.

Long inputs are repaired a block of frames at a time: the magnitudes, the
0/1 weights (bool) and the activations are the only full-length arrays besides
the input and the output; Griffin–Lim runs on pieces of a quarter block, each
with a margin of context on both sides, up to four at once on the CPU's threads,
and neighbouring pieces are cross-faded over a few frames around each cut.

A bin counts as missing when its frequency lies outside the band the input
occupies (given as ``band_lo_hz``–``band_hi_hz``, or else found as the run of
frequencies whose long-term level is within ``band_db`` of what the example's
spectrum predicts: :func:`found_band`), when it is ``floor_db`` below the input's
loudest bin and so is a neighbour (a lone bin that deep is a null: :func:`lone_bins`),
or when it is painted (``hints.paint``, any target: a spectral repair's selection, for
a click, a cough or a damaged patch whose content is to be replaced). A found band
outside which the input keeps a share of its own energy (an example of another kind
of sound) is refused: :func:`check_found_band`. The output is one waveform layer,
"repaired": the input with its missing bins replaced by the fill (for an empty gap,
the input plus what was filled); the session's residual then holds what was taken
out less what was filled (mute it to hear the repair, or solo "repaired"). Only the
stretches around frames with a missing bin are fitted and synthesised again
(:func:`fit_observed`, :func:`fill_stretches`). A repaired layer far louder than the
input gets a note (:func:`level_change_db`). An example that has nothing where the input is missing
(recorded at a lower rate) is refused, and one that lacks part of it gets a note
(:func:`check_example_covers`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import numpy as np
import torch

from demixstudio.audio.io import energy
from demixstudio.audio.stft import STFT_BLOCK, istft, stft
from demixstudio.errors import Cancelled, ParameterError
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import (
    Hints,
    LayerProposal,
    Method,
    param,
    params_to_dict,
)
from demixstudio.separation.nmf import common, engine, spectra, transposition
from demixstudio.separation.registry import register


@register
class Repair(Method):
    name = "repair"
    title = "Repair (bandwidth, gaps)"
    summary = ("Bring back missing frequencies or fill time–frequency gaps from a full-band "
               "example of the same kind of sound; paint over a click, a cough or a damaged "
               "patch to have it replaced.")
    references = (
        "P. Smaragdis, B. Raj, M. Shashanka, 'Missing data imputation for time-frequency "
        "representations of audio signals', J. Signal Processing Systems 65:361–370, 2011.",
        "D. Griffin, J. Lim, 'Signal estimation from modified short-time Fourier transform', "
        "IEEE Trans. ASSP 32(2):236–243, 1984.",
        "N. Perraudin, P. Balazs, P. L. Søndergaard, 'A fast Griffin-Lim algorithm', "
        "IEEE WASPAA 2013.",
    )
    hint_kinds = ("examples", "paint")

    @dataclass(frozen=True)
    class Params(common.EngineParams):
        components: int = common.components_param(
            64, "Templates", "Templates learned from the full-band example.")
        # Fitted on a few bins, a template with little mass there gets an activation
        # of (its evidence / that mass): the L1 term floors the mass at 1 % so such
        # templates cannot blow up and flood the missing bins.
        sparsity: float = common.sparsity_param(0.01)
        band_db: float = param(
            30.0, label="Band threshold (dB)", min=5.0, max=150.0,
            help="Frequencies whose long-term level is this far below what the example's "
                 "spectrum predicts are treated as missing (band limits).")
        floor_db: float = param(
            120.0, label="Gap threshold (dB)", min=20.0, max=200.0,
            help="Bins this far below the loudest bin are treated as missing (gaps); a lone "
                 "one among louder bins is a null, not a gap, and is left as it is.")
        band_lo_hz: float = param(
            0.0, label="Band low edge (Hz)", min=0.0,
            help="If the input's band is known (a telephone line: 300–3400 Hz), its lower "
                 "edge; everything below is missing. 0 = find the band from the levels.")
        band_hi_hz: float = param(
            0.0, label="Band high edge (Hz)", min=0.0,
            help="Upper edge of a known band; everything above is missing. 0 = find it.")
        phase_iter: int = param(15, label="Phase iterations", min=0, max=1000,
                                help="Fast Griffin–Lim iterations for the phase of filled "
                                     "bins (0 = random phases).")
        semitone_copies: int = param(
            1, label="Transposed copies (semitones)", min=0, max=6, advanced=True,
            help="For a band-limited input, the example's templates are also used moved "
                 "1 to this many semitones up and down, for notes the example does not "
                 "play (see shifted_templates), when that predicts the input's own band "
                 "better (see choose_copies); each semitone costs two more templates' "
                 "worth of fitting. 0 = as learned.")
        match_level: bool = param(
            True, label="Check the fill's level", advanced=True,
            help="Before filling, predict the missing frequencies where the answer is "
                 "known and turn the fill down where that comes out too loud: in each "
                 "quarter of the example from the rest of it, by half the error (see "
                 "fill_gain), and for gaps also in the input's frames that have those "
                 "frequencies (see gap_fill_gain), the lower of the two. Off = the "
                 "model's fill as it is.")

    def separate(self, mix: np.ndarray, sr: int, params: Repair.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """One waveform proposal float32 (channels, samples): the repaired input."""
        examples = [h for hs in hints.examples.values() for h in hs]
        if not examples:
            raise ParameterError("repair needs a full-band example recording "
                                 "(--hint example:NAME=FILE)")
        mix = np.asarray(mix, dtype=np.float32)
        m = common.open_mixture(self, mix, sr, params, ctx)
        # One magnitude serves for the dictionary and for the expected spectrum.
        Ve = spectra.example_magnitude(examples, sr, m.cfg, "the full-band example")
        _, W, _ = common.hinted_templates({"example": examples}, sr, m, params.components,
                                          params, ctx, "example", (0.05, 0.4),
                                          magnitudes={"example": Ve})
        expected = Ve.mean(axis=1)
        freqs = m.cfg.bin_freqs(sr)
        O, limited = self._observed(m, params, freqs, expected)
        if hints.paint:
            O = self._unpainted(O, hints, m.cfg.frame_times(mix.shape[1], sr), freqs)
        n_missing = sum(int((~o).sum()) for o in O)
        limited = limited or band_like(O)
        # The transposed copies serve a band limit; in a gap the partials on both sides
        # pin the note (see shifted_templates). They are used where they predict the
        # input's own band better (see choose_copies).
        copies = params.semitone_copies if limited and n_missing else 0
        if copies:
            with ctx.stage(0.4, 0.45, "choosing the templates' copies"):
                copies = choose_copies(m.V, O, W, copies, freqs, params, ctx)
        gain = None
        counts = missing_counts(O)
        missing = counts > 0
        uncovered = check_example_covers(Ve, counts, freqs) if n_missing else None
        if n_missing and params.match_level:
            with ctx.stage(0.45, 0.55, "checking the fill's level"):
                gain = fill_gain(Ve, missing, freqs, params, ctx, m.device, copies)
                if not limited:
                    # The lower of the two checks' gains (both turn the fill down only).
                    own = gap_fill_gain(m.V, O, W, missing, freqs, params, ctx)
                    if own is not None:
                        gain = own if gain is None else np.minimum(gain, own)
        del Ve
        if n_missing == 0:
            info = {"missing_fraction": 0.0, "note": (
                "nothing to repair: the input has every frequency the example's spectrum "
                "has, so the layer is the input as it is (give band_lo_hz/band_hi_hz if "
                "the band is known)")}
            return [LayerProposal("repaired", self.name, params_to_dict(params),
                                  waveform=mix.copy(), extra=info)]
        W = shifted_templates(W, copies)
        with ctx.stage(0.55, 0.8, "fitting the observed bins"):
            lam = common.l1_weight(params.sparsity, params.beta, m.mean_frame / m.cfg.bins)
            # The start is not kept past the fit (an hour's is 0.24 GB at rank 192).
            W, Hn, iterations = fit_observed(
                m.V, O, W, spectra.init_activations(m.V, W.shape[1], params.seed), lam,
                params, ctx)
        common.release_spectrogram(m)  # the synthesis needs the fit, not the magnitude
        with ctx.stage(0.8, 1.0, "phase"):
            Wf = W.cpu().numpy()
            if gain is not None:
                Wf *= gain[:, None]
            out = _synthesise(mix, m.cfg, Wf, Hn, O, params.phase_iter,
                              params.block_frames, ctx)
        info = {"missing_fraction": n_missing / float(m.cfg.bins * m.frames),
                "iterations": iterations, "semitone_copies_used": copies}
        if gain is not None:
            info["fill_gain_db"] = round(float(20.0 * np.log10(gain[missing]).mean()), 2)
        louder = level_change_db(mix, out)
        info["level_change_db"] = round(louder, 2)
        notes = [uncovered] if uncovered else []
        if louder > LOUDER_NOTE_DB:
            notes.append(
                f"the repaired layer is {louder:.0f} dB louder than the input: nearly all of "
                f"it is fill, extrapolated from the frequencies the input has. That is right "
                f"for a recording that lost most of its energy with its band (a bass guitar "
                f"cut to 400–1600 Hz); otherwise the example is another kind of sound")
        if notes:
            info["note"] = "; ".join(notes)
        return [LayerProposal("repaired", self.name, params_to_dict(params), waveform=out,
                              extra=info)]

    @staticmethod
    def _unpainted(O: list[torch.Tensor], hints: Hints, times: np.ndarray, freqs: np.ndarray
                   ) -> list[torch.Tensor]:
        """``O`` with the painted bins (any target, at :data:`PAINT_MISSING` or more)
        marked missing, as a spectral repair's selection is: the fit ignores what
        they hold and the model fills them, from the bins around them and the
        example."""
        out, t0 = [], 0
        for o in O:
            b = o.shape[1]
            painted = np.zeros(o.shape, dtype=bool)
            for hint in hints.paint.values():
                painted |= hint.on_grid(times[t0:t0 + b], freqs) >= PAINT_MISSING
            out.append(o & ~torch.as_tensor(painted, device=o.device))
            t0 += b
        return out

    @staticmethod
    def _observed(m: common.Mixture, p: Repair.Params, freqs: np.ndarray,
                  expected: np.ndarray) -> tuple[list[torch.Tensor], bool]:
        """Per block of ``m.V``, bool (bins, B): the bins that exist in the input; and
        whether the input is band-limited (given, or found so).

        ``expected`` (bins,) is the example's long-term magnitude: a frequency is
        missing when the input's long-term level there falls ``band_db`` below what
        that spectrum predicts (relative to the well-matched frequencies), so a
        naturally quiet band of a full-band input is not mistaken for a cut one.
        """
        if p.band_lo_hz > 0 or p.band_hi_hz > 0:
            hi = p.band_hi_hz if p.band_hi_hz > 0 else np.inf
            in_band = (freqs >= p.band_lo_hz) & (freqs <= hi)
        else:
            in_band = found_band(inner_level(m.V, m.cfg), expected, freqs, p.band_db)
            check_found_band(m.V, in_band, freqs)
        peak = max(float(b.max()) for b in m.V)
        floor = peak * 10 ** (-p.floor_db / 20)
        band = torch.as_tensor(in_band, device=m.device).reshape(-1, 1)
        below = [b <= floor for b in m.V]
        return ([~(q & ~lone_bins(below, i)) & band for i, q in enumerate(below)],
                not bool(in_band.all()))


def inner_level(V: list[torch.Tensor], cfg) -> np.ndarray:
    """The input's long-term magnitude float64 (bins,): the mean over its frames,
    leaving out those whose window reaches past either end of the input.

    V : the magnitude blocks float32 (bins, B), in order

    Those frames see the STFT's zero padding, and an input that starts or ends on
    sound (an excerpt, a selection) steps from it: a broadband click. In a short
    input the two frames that hold it carry the mean over a cut band. A sung phrase
    of 3 s low-passed at 4 kHz (16 kHz) read 15–34 dB under its example above 4 kHz,
    around ``band_db``, so the cut was not found, while above 5 kHz its other frames
    lay 70–110 dB under the truth. Inputs too short to leave any frame keep them all.
    """
    head = cfg.n_fft // (2 * cfg.hop)  # frames centred less than n_fft/2 from the start
    tail = head + 1  # the last frame is centred at or past the last sample
    total = sum(b.shape[1] for b in V)
    if total <= head + tail:
        head = tail = 0
    level = np.zeros(V[0].shape[0], dtype=np.float64)
    t0 = 0
    for b in V:
        a, e = max(head - t0, 0), min(b.shape[1], total - tail - t0)
        if e > a:
            level += b[:, a:e].sum(dim=1).cpu().numpy().astype(np.float64)
        t0 += b.shape[1]
    return level / (total - head - tail)


def lone_bins(below: list[torch.Tensor], i: int) -> torch.Tensor:
    """bool (bins, B): the bins of block ``i`` of ``below`` (bool (bins, B_j) blocks,
    True where a bin is under the floor) none of whose four neighbours in time and
    frequency is (the previous and next blocks give the neighbours across its edges).

    A gap is a region: a dropout, an erased patch, a notch. A lone bin under the floor
    is a null where components cancel (found at −120 dB now and then near the top of
    a 44.1 kHz recording); filling it changes nothing that can be heard, and
    synthesising the stretch around it again cost most of the time of repairing a
    long file with one gap (10 minutes of stereo: 409 such stretches).
    """
    q = below[i]
    near = torch.zeros_like(q)
    near[1:] |= q[:-1]
    near[:-1] |= q[1:]
    near[:, 1:] |= q[:, :-1]
    near[:, :-1] |= q[:, 1:]
    if i > 0:
        near[:, 0] |= below[i - 1][:, -1]
    if i + 1 < len(below):
        near[:, -1] |= below[i + 1][:, 0]
    return q & ~near


#: Paint of this opacity or more marks a bin missing (``hints.paint``); a soft
#: brush's fainter edge leaves its bins to the fit.
PAINT_MISSING = 0.5


#: A repaired layer this much louder (dB) than the input gets a note (see
#: :func:`level_change_db`).
LOUDER_NOTE_DB = 12.0


def level_change_db(before: np.ndarray, after: np.ndarray) -> float:
    """How much louder (dB, by energy) ``after`` is than ``before``, both float32
    (channels, samples) of one length (:func:`demixstudio.audio.io.energy`: no
    full-size temporary).

    Why a note above :data:`LOUDER_NOTE_DB`: the fill is predicted from the present
    frequencies by the example's templates, and its level follows the example's
    balance between those and the missing ones. That is what a repair is for when the
    input lost most of its energy with its band (at 16 kHz, a bass guitar cut to
    400–1600 Hz came out 22 dB louder than the input and 13 dB under the original);
    with an example of another kind of sound it is an error (a saxophone with a drum
    kit's example, +13 dB; a trumpet with a bass guitar's, +21 to +26 dB; a constant
    input with rain's, +27 dB). Of 44 repairs with an example of the same recording
    (eleven recordings, 2026-11-24) only the bass guitar's two band limits passed
    12 dB, at 16 kHz (+22 and +20 dB) and at 44.1 kHz (+18 and +18 dB); the next were
    drums cut to 400–1600 Hz, +8 and +5 dB. With examples of other recordings (88
    repairs at 16 kHz), 11 passed it."""
    den, num = energy(before), energy(after)
    if den <= 0.0:
        return 0.0 if num <= 0.0 else float("inf")
    return 10.0 * np.log10(max(num, 1e-300) / den)


#: Share of the input's energy (power) that the frequencies outside a found band may
#: hold: above it the band is refused (see :func:`check_found_band`).
LOST_SHARE = 0.05


def check_found_band(V: list[torch.Tensor], in_band: np.ndarray, freqs: np.ndarray) -> None:
    """Refuse a found band outside which the input has sound of its own.

    V : the input's magnitude blocks float32 (bins, B); in_band : bool (bins,), as
    :func:`found_band` gives it; freqs : the bins' frequencies (Hz).

    The repair fills the missing bins *instead of* what the input has there. Outside
    a real band limit that is the filter's remains, a small share of the input's
    energy; when the example is another kind of sound, its spectrum can put the
    input's own sound outside the band it implies, and the repaired layer would lose
    it. Measured 2026-11-24 on eleven recordings (speech, singing, instruments, a
    band's stems, rain) with an example from another excerpt of the same recording,
    cut to 400–1600 Hz, 300–3400 Hz or under 4 kHz or with a gap (44 repairs at 16 and
    at 44.1 kHz): the bins outside the found band held at most 0.7 % (16 kHz) and
    0.5 % (44.1 kHz) of the input's energy, both a bass guitar cut to 300–3400 Hz
    (what the filter leaves under 300 Hz). With an example of another recording (16
    kHz, 22 pairs, 88 repairs) four put 8–98 % of the input outside the band: speech
    with a singer's example, 8 and 24 % (the repaired layer 12 dB louder than the
    original); drums under 4 kHz with a bass guitar's, 98 %; rain with a gap and a
    speaker's, 20 %. The next held 3 %. With a pure tone as the example, 99 % of a
    speaker's band-limited speech lay outside, and its repaired layer came out 46 dB
    under the input. :data:`LOST_SHARE` lies between the two groups.
    """
    # Per block on the device in float32 (MPS has no float64), across blocks in float64.
    power = sum((b * b).sum(dim=1).cpu().numpy().astype(np.float64) for b in V)
    total = float(power.sum())
    lost = float(power[~in_band].sum())
    if total > 0.0 and lost > LOST_SHARE * total:
        where = freqs[in_band]
        raise ParameterError(
            f"the example does not match this input: the band its spectrum implies "
            f"({where[0]:.0f}–{where[-1]:.0f} Hz) leaves out {100.0 * lost / total:.0f} % "
            f"of the input's energy, which the repair would replace. Use an example of "
            f"the same kind of sound, or give the input's band (band_lo_hz, band_hi_hz)")


#: An example that has none of this share of the input's missing bins (frequency ×
#: frame) is refused: what it could fill is a few scattered bins, not what is missing.
UNCOVERED_SHARE = 0.95
#: ... and one that has none of this share gets a note. Under it the uncovered bins
#: are a sliver at the top of the band (a bass guitar's example ends at 7.9 kHz at
#: 16 kHz: 2.8 % of what its cut under 4 kHz misses), which the original lacks too.
UNCOVERED_NOTE_SHARE = 0.25


def check_example_covers(Ve: np.ndarray, counts: np.ndarray, freqs: np.ndarray
                         ) -> str | None:
    """Refuse an example that has nearly none of the frequencies the input is missing
    (:data:`UNCOVERED_SHARE`); return a note when it lacks a good part of them
    (:data:`UNCOVERED_NOTE_SHARE`), else None.

    Ve : the example's magnitude float32 (bins, frames); counts : int (bins,), in how
    many frames each frequency is missing (:func:`missing_counts`); freqs : the bins'
    frequencies (Hz).

    The fill above :func:`spectra.spectrum_top` is empty. Without this check, speech cut under
    4 kHz "repaired" from a phone's 8 kHz recording of the same speaker came back as
    it was (log-spectral distance 7.8 → 7.8 dB with the band found, → 8.3 dB with it
    given), and no one said why. Of its missing bins, 99 % or more lay above the
    example's top (3.9 kHz), the rest scattered single bins under the gap threshold.
    """
    top = spectra.spectrum_top(Ve, freqs)
    beyond = (counts > 0) & (freqs > top)
    if not beyond.any():
        return None
    where = f"{freqs[beyond][0]:.0f}–{freqs[beyond][-1]:.0f} Hz"
    share = float(counts[beyond].sum()) / float(counts.sum())
    if share >= UNCOVERED_SHARE:
        raise ParameterError(
            f"the example has nothing above {top:.0f} Hz (it was recorded at a lower rate, "
            f"or cut there), and that is where the input's missing frequencies lie "
            f"({where}, {100.0 * share:.1f} % of what is missing): there is nothing to fill "
            f"them from. Use an example that has them")
    if share < UNCOVERED_NOTE_SHARE:
        return None
    return (f"the example has nothing above {top:.0f} Hz (recorded at a lower rate, or "
            f"cut there), so {where} stays empty ({100.0 * share:.1f} % of what is missing)")


#: Share of the frames with sound that lack some frequency above which missing bins
#: are treated as a band limit (see :func:`band_like`).
BAND_LIKE_SHARE = 0.5


def band_like(observed: list[torch.Tensor]) -> bool:
    """Whether most frames with sound lack some frequency (more than
    :data:`BAND_LIKE_SHARE`): a band limit the band search did not find (a steep
    low-pass leaves the top of the spectrum under the floor in nearly every frame),
    not a gap, whose frequencies the other frames hold. Such an input gets what a band
    limit gets: the templates' transposed copies, and no check of the fill on the
    input's own frames, which hold the band's attenuated remains, not the truth.

    Measured 2026-11-24 on the ten recordings of :func:`fill_gain` cut under 4 kHz,
    band left to find: a saxophone, whose cut the search misses, went from −45 to
    +16 % at 16 kHz and from −11 to +17 % at 44.1 kHz (worse than the damaged input
    before); the ten's mean from 25.3 to 31.4 % and from 28.3 to 31.2 %."""
    lacking = sound = 0
    for o in observed:
        has = o.any(dim=0)
        sound += int(has.sum())
        lacking += int((has & ~o.all(dim=0)).sum())
    return sound > 0 and lacking > BAND_LIKE_SHARE * sound


def shifted_templates(W: torch.Tensor, semitones: int) -> torch.Tensor:
    """``W`` float32 (bins, K) beside its copies moved 1 … ``semitones`` semitones up and
    down (:func:`spectra.transpose_magnitude`): (bins, K · (2 · semitones + 1)), every
    column of unit sum, on ``W``'s device. ``semitones`` 0 returns ``W``.

    An example seldom plays every note the input does. A template is one note's
    spectrum (or a blend of a few), and the present band of a note the example lacks
    is then explained by a mix of templates whose missing bands hold other notes'
    partials: the fill has its harmonics in the wrong places (in the log-spectral
    distance, worse than an empty band). Copies a semitone up and down give each
    template the neighbouring notes, a step towards shift-invariant dictionaries
    (Smaragdis, Raj & Shashanka 2008), which a pitched source's notes call for.

    Measured 2026-11-24 on ten recordings with a separate example excerpt (speech,
    singing, instruments, a band's stems; cut to 400–1600 or 300–3400 Hz with the
    band given and found, or under 4 kHz; 50 repairs per rate), the mean reduction of
    the log-spectral distance went from 33.7 to 39.2 % at 16 kHz (15 repairs better,
    19 worse, by 3 points at most) and from 30.9 to 35.9 % at 44.1 kHz (25 better, 11
    worse, by 4 points at most: the piano cut to 400–1600 Hz, 51 → 47 %). A saxophone
    phrase whose example plays other notes went from −45…−5 % to +16…+45 % (16 kHz)
    and from −28…−1 % to +17…+40 % (44.1 kHz). Copies up to 2 semitones (an earlier
    build, gaps included): 37.1 % at 16 kHz against 37.5 % with one, with larger
    losses. The fit costs three times as much with one copy each way (a 4 s repair:
    1.0 → 1.2 s with the check of :func:`fill_gain`, which uses the copies too; 10
    minutes of 44.1 kHz stereo cut to 400–1600 Hz: 150 → 190 s, peak RSS 1350 MB).

    They are used for band limits only, and there only when the input's own band
    says they predict better (:func:`choose_copies`). In a gap the frames keep the
    partials on both sides of it, which pin the note, and over the same ten
    recordings' gaps (a 1.6–5 kHz × 0.6 s hole) the copies gained little and lost
    more: 7 of 10 within a point at either rate, a singer's 47 → 51 % (16 kHz) and
    51 → 52 % (44.1 kHz), but a speaker's 34 → 29 % and 33 → 28 % and the trumpet's
    −47 → −57 % and −123 → −147 %; ``bench_nmf.py``'s cello gap 31 → 28 %.
    """
    if semitones <= 0:
        return W
    W0 = W.cpu().numpy()
    parts = [W0]
    for s in range(1, int(semitones) + 1):
        parts += [spectra.transpose_magnitude(W0, float(s)),
                  spectra.transpose_magnitude(W0, -float(s))]
    out = np.maximum(np.concatenate(parts, axis=1), engine.EPS)
    out /= out.sum(axis=0, keepdims=True)
    return torch.as_tensor(out).to(W.device)


#: Frames of the input, at most, on which :func:`choose_copies` compares dictionaries.
CHOICE_FRAMES = 512
#: Updates of the activations in each of its predictions.
CHOICE_MAX_ITER = 50
#: Present frequencies, at least, for that comparison (fewer: the copies are used).
CHOICE_MIN_BINS = 8


def choose_copies(V: list[torch.Tensor], observed: list[torch.Tensor], W: torch.Tensor,
                  most: int, freqs: np.ndarray, p: Repair.Params, ctx: JobContext) -> int:
    """How many semitones of transposed copies (0 … ``most``) the fill of a
    band-limited input uses: the count whose templates best predict the input's own
    present band, each half of it from the other.

    V, observed : the input's magnitude blocks (bins, B) and their bool present bins
    W : the example's templates float32 (bins, K), as learned

    The present frequencies (observed in some frame) are split at their midpoint on
    the ERB-rate scale. In at most :data:`CHOICE_FRAMES` of the input's frames, each
    half is hidden, predicted from the other with :func:`shifted_templates` ``(W,
    n)`` as the fill is (:func:`_predict_hidden`), and compared with what is there
    by the log-spectral distance (:func:`_hidden_distance`). The count with the
    lowest mean distance over the two halves is used; the fill's question,
    predicting frequencies the fit did not see, asked where the input has the answer.

    Why: the copies give a note the example does not play its partials (a saxophone
    phrase whose example plays other notes: see :func:`shifted_templates`), but with
    three times the templates, more of them fit a narrow band for the wrong reasons.
    A 3.8 s solo piano cut to 400–1600 Hz at 44.1 kHz, whose 1.9 s example plays
    other notes, got a fill 22 dB louder than the truth under 200 Hz with them (the
    repair −17 %, the log-spectral distance 8.4 → 9.9 dB), and +24 % without. This
    check reads 21.0 dB without the copies and 21.2 with them on that piano, and
    14.9 and 9.2 on the saxophone cut to 400–1600 Hz (which the copies take from
    +1 % to +39 %).

    Measured on ``bench_repair_set.py``'s ten recordings (the 50 band limits per
    rate), the mean reduction of the log-spectral distance went from 41.5 % (always
    the copies) to 42.5 % at 16 kHz and from 36.9 to 38.2 % at 44.1 kHz; choosing
    after the fact, the better of the two in every repair, gives 42.9 and 38.6 %. The
    copies were left out in 15 of 50 repairs at 16 kHz (the two pianos' and the
    trumpet's five each) and in 8 at 44.1 kHz (the solo piano's five, three of the
    trumpet's). The solo piano's repairs that did harm (−4 % at 16 kHz, −17 % at
    44.1 kHz) do none; the largest loss was 1.8 points (the trumpet cut to
    400–1600 Hz, band found, 16 kHz). A gap in the trumpet's quiet tail, taken
    for a band limit (:func:`band_like`), went from −76 to −42 % at 44.1 kHz and from
    −10 to −15 % at 16 kHz. It costs four fits of activations on 512 frames (0.15–0.17
    s a repair on the set).
    """
    if most <= 0:
        return 0
    rows = observed[0].any(dim=1)
    for o in observed[1:]:
        rows |= o.any(dim=1)
    rows_np = rows.cpu().numpy()
    if int(rows_np.sum()) < CHOICE_MIN_BINS:
        return most
    erb = erb_rate(freqs)
    present = np.flatnonzero(rows_np)
    upper = rows_np & (erb >= 0.5 * (erb[present[0]] + erb[present[-1]]))
    lower = rows_np & ~upper
    if not upper.any() or not lower.any():
        return most
    sample = transposition.sample_frames(V, CHOICE_FRAMES)
    if not sample.any():
        return most
    q = replace(p, max_iter=CHOICE_MAX_ITER)
    best, best_count = np.inf, most
    for n in range(most + 1):
        Wn = shifted_templates(W, n)
        d = 0.0
        for hidden, fitted in ((upper, lower), (lower, upper)):
            pred = _predict_hidden(sample, Wn, torch.as_tensor(fitted, device=W.device),
                                   q, ctx)
            d += _hidden_distance(sample, pred, hidden)
        if d < best:
            best, best_count = d, n
    return best_count


def _hidden_distance(truth: np.ndarray, pred: np.ndarray, hidden: np.ndarray) -> float:
    """The log-spectral distance (dB, :func:`spectra.power_log_distance`: power floored
    80 dB under the truth's peak) of the ``hidden`` rows (bool (bins,)) of ``pred`` from
    ``truth`` (float (bins, frames) magnitudes), over the frames with sound
    (:func:`_sounding`)."""
    sounding = _sounding(truth)
    t = truth[hidden][:, sounding].astype(np.float64) ** 2
    e = pred[hidden][:, sounding].astype(np.float64) ** 2
    return spectra.power_log_distance(t, e, float(truth.max()) ** 2)


def _sounding(truth: np.ndarray) -> np.ndarray:
    """bool (frames,): the frames of ``truth`` (float (bins, frames) magnitudes) whose
    summed magnitude is within 60 dB of the loudest frame's."""
    energy = truth.sum(0)
    return energy > energy.max() * 1e-3


#: Width (standard deviation) of the smoothing of the input's level against the
#: example's, in ERB-rate units (Glasberg & Moore 1990).
SMOOTH_ERB = 0.5
#: Frequencies where the example's smoothed spectrum is this far (dB) under its
#: loudest say nothing about the band.
EVIDENCE_DB = 60.0


def erb_rate(freqs: np.ndarray) -> np.ndarray:
    """Frequencies (Hz) on the ERB-rate scale (Glasberg & Moore 1990), in ERBs."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(freqs, dtype=np.float64))


def erb_smooth(values: np.ndarray, weights: np.ndarray, erb: np.ndarray, width: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """A weighted Gaussian mean over frequency, on the ERB-rate axis.

    values, weights : (n,), weights ≥ 0; erb : (n,) the points' ERB rates, increasing
    width : the Gaussian's standard deviation (ERBs; points beyond four are left out)
    Returns ((n,) the weighted means, (n,) the mean weight under each Gaussian).
    """
    lo = np.searchsorted(erb, erb - 4.0 * width)
    hi = np.searchsorted(erb, erb + 4.0 * width, side="right")
    mean = np.empty(erb.size)
    local = np.empty(erb.size)
    for i in range(erb.size):
        k = np.exp(-0.5 * ((erb[lo[i]:hi[i]] - erb[i]) / width) ** 2)
        w = k * weights[lo[i]:hi[i]]
        total = float(w.sum())
        mean[i] = float((w * values[lo[i]:hi[i]]).sum()) / max(total, 1e-300)
        local[i] = total / float(k.sum())
    return mean, local


def found_band(level: np.ndarray, expected: np.ndarray, freqs: np.ndarray,
               band_db: float) -> np.ndarray:
    """The band an input occupies, from its long-term magnitude against an example's.

    level, expected : (bins,) long-term mean magnitudes of the input and of the example
    freqs : the bins' frequencies (Hz)
    band_db : how far (dB) under the example's prediction a frequency is cut
    Returns bool (bins,): True from the band's lowest frequency to its highest.

    The input's level over the example's, in dB, is smoothed over half an ERB
    (weighted by the example's level, so a frequency where the example has next to
    nothing takes its neighbours' reading), and read only where the example's
    smoothed spectrum is within :data:`EVIDENCE_DB` of its loudest: elsewhere
    neither a cut nor its absence shows. A frequency reads "in the band" within
    ``band_db`` of the 95th percentile of the readings and "cut" below it. A band
    limit is one run of frequencies, so the band is the run that holds the most
    "in" and the fewest "cut" frequencies (the maximum-sum run, each frequency
    counted by its width in ERBs, so that the many bins of the top octaves do not
    outvote the few of the low ones), widened to an end of the spectrum when
    nothing beyond it reads "cut".

    The rule it replaces (from the first to the last frequency within ``band_db``,
    bin by bin) was set off by single bins at the ends of the spectrum where both
    recordings have almost nothing: a speaker's recording cut to 400–1600 Hz was
    found to span 31–1812 Hz, the same cut to 4 kHz 0–8000 Hz, and at 44.1 kHz the
    cut at 1600 Hz was missed in eight of twelve recordings (this rule misses it in
    one). On those twelve (speech, singing, instruments, a band's stems, rain; 16
    and 44.1 kHz; cut to 400–1600 Hz, 300–3400 Hz, under 2, 4 or 6 kHz or over
    1 kHz) both rules leave every full-band recording whole. Measured 2026-11-24 on
    the ten of them with a separate example excerpt, cut to 400–1600 Hz, 300–3400 Hz
    or under 4 kHz with the band left to be found (30 repairs per rate), the repair's
    log-spectral distance fell by a median of 35 % with either rule at 16 kHz (mean
    27 → 30 %; 11 repairs better, 11 worse, the largest loss 6 points: the cello cut
    at 300 Hz, whose example has little under it) and by 26 → 35 % at 44.1 kHz (mean
    22 → 28 %; 16 better, 2 worse), where the steep cuts' empty bins are mostly found
    missing by ``floor_db`` anyway. A recording whose missing bands hold noise (a
    phone line) is not caught by ``floor_db`` and depends on this rule alone.
    """
    F = level.size
    tiny = float(expected.max()) * 1e-9
    r = 20.0 * np.log10(np.maximum(level, tiny) / np.maximum(expected, tiny))
    e = erb_rate(freqs)
    rs, local = erb_smooth(r, expected, e, SMOOTH_ERB)
    evidence = local > local.max() * 10.0 ** (-EVIDENCE_DB / 20.0)
    # A high percentile, not the maximum, so that one odd frequency where the example
    # happens to be weak does not set the reference.
    ref = float(np.percentile(rs[evidence], 95))
    ok = evidence & (rs > ref - band_db)
    bad = evidence & ~ok
    score = (ok.astype(np.float64) - bad) * np.gradient(e)
    # Kadane's maximum-sum run.
    best, cur, start, lo, hi = -np.inf, 0.0, 0, 0, F - 1
    for i, v in enumerate(score):
        if cur <= 0.0:
            cur, start = v, i
        else:
            cur += v
        if cur > best:
            best, lo, hi = cur, start, i
    if not bad[:lo].any():
        lo = 0
    if not bad[hi + 1:].any():
        hi = F - 1
    out = np.zeros(F, dtype=bool)
    out[lo:hi + 1] = True
    return out


#: Folds of the example in :func:`fill_gain`'s check.
GAIN_FOLDS = 4
#: Updates of each fold's dictionary in that check. The check reads a mean log
#: error smoothed over 3 ERBs, which these templates' last refinements do not move:
#: on bench_repair_set.py's 60 repairs, 50 updates instead of 200 changed the
#: distance's reduction by −0.8 … +0.5 points at 16 kHz and −1.6 … +1.0 at 44.1 kHz
#: (the mean by −0.06 and −0.04) and took the 60 repairs from 69 to 43 s at 16 kHz.
GAIN_MAX_ITER = 50
#: Share of the level error found by that check that is corrected.
GAIN_SHARE = 0.5
#: Frames of the example that check looks at, at most (evenly spread runs).
GAIN_FRAMES = 2048
#: Smoothing of the level error over frequency (standard deviation, ERBs).
GAIN_SMOOTH_ERB = 3.0
#: Largest correction (dB), either way.
GAIN_RANGE_DB = 30.0


def missing_counts(observed: list[torch.Tensor]) -> np.ndarray:
    """int64 (bins,): in how many of the frames that have anything observed each
    frequency is missing."""
    count = np.zeros(observed[0].shape[0], dtype=np.int64)
    for o in observed:
        cols = o.any(dim=0)
        if bool(cols.any()):
            count += (~o[:, cols]).sum(dim=1).cpu().numpy()
    return count


def fill_gain(Ve: np.ndarray, missing: np.ndarray, freqs: np.ndarray, p: Repair.Params,
              ctx: JobContext, device: torch.device, copies: int = 0
              ) -> np.ndarray | None:
    """How much to scale the fill at each frequency: float32 (bins,), 1 where nothing
    is missing; None when there is nothing to check it on.

    Ve : float32 (bins, frames), the example's magnitude
    missing : bool (bins,), the frequencies the input lacks somewhere
    copies : the fill's transposed copies (:func:`shifted_templates`), used here too

    The repair's question asked of the example, where the answer is known: it is cut
    into :data:`GAIN_FOLDS` stretches, and each is predicted from the templates of
    the others, fitted on its present frequencies only, as the input is. The mean
    log ratio of the truth to the prediction at the missing frequencies (over the
    frames with sound, smoothed over :data:`GAIN_SMOOTH_ERB` ERBs) is the fill's
    level error. Where the prediction was too loud, the fill is turned down by
    :data:`GAIN_SHARE` of it; it is never turned up.

    Why: where the example holds other notes than the input (a saxophone phrase and
    another part of it), the templates that fit the present band carry the upper
    bands of other notes, and the fill came out up to 6 dB louder than the truth,
    worse than leaving the band empty. Why down only, and by half: templates learned
    on three quarters of the example fit the present band less closely than those
    of the whole (and the L1 term shrinks what they explain), so the check reads the
    fill as quieter than it is: for a 2.6 s sung example at 44.1 kHz it read +4.4 dB,
    and raising the fill by half of that took the repair of the voice cut to
    300–3400 Hz from 45 % to 32 %.

    Measured 2026-11-24, before the templates' transposed copies
    (:func:`shifted_templates`), on ten recordings with a separate example excerpt
    (speech, singing, instruments, a band's stems; cut to 400–1600 Hz or 300–3400 Hz
    with the band given and found, under 4 kHz, or a 1.6–5 kHz × 0.6 s gap; 60 repairs
    per rate), the mean reduction of the log-spectral distance went from 31.1 to 33.1 %
    at 16 kHz (32 repairs better, 10 worse, by 3 points at most) and from 27.0 to
    29.5 % at 44.1 kHz (29 better, 7 worse, by 3 points at most). The saxophone's
    five band limits went from −58…−18 % to −45…−5 % at 16 kHz and from −54…−17 %
    to −28…−1 % at 44.1 kHz: less harm, still harm (the copies then turned them into
    gains). With the copies, the check run with them too against the check run without
    them (16 kHz): a mean of 37.5 % either way (11 repairs better, 10 worse, by 3 points
    at most); it uses them, as the fill does. Whether the check still gains beside the
    copies was not measured over the set; on the saxophone cut to 400–1600 Hz it takes
    the distance from 5.30 to 5.03 dB. Correcting the whole error both ways (16 kHz,
    an earlier smoothing, no copies): a mean of 34.2 %, but up to 7 points lost (the
    band's singer cut under 4 kHz, 56 → 49 %); with two folds, up to 11.
    """
    if not missing.any() or missing.all():
        return None
    T = Ve.shape[1]
    if T > GAIN_FRAMES:
        Ve = transposition.sample_frames([Ve], GAIN_FRAMES)
        T = Ve.shape[1]
    edges = np.linspace(0, T, GAIN_FOLDS + 1).astype(int)
    if int(np.diff(edges).min()) < 2:
        return None
    F = Ve.shape[0]
    total = np.zeros(F)
    count = 0
    present = torch.as_tensor(~missing, device=device)
    for i in range(GAIN_FOLDS):
        with ctx.stage(i / GAIN_FOLDS, (i + 1) / GAIN_FOLDS, "checking the fill's level"):
            part = np.ascontiguousarray(Ve[:, edges[i]:edges[i + 1]])
            rest = np.concatenate([Ve[:, :edges[i]], Ve[:, edges[i + 1]:]], axis=1)
            W = shifted_templates(
                spectra.learn_dictionary(rest, p.components, ctx, beta=p.beta,
                                         max_iter=GAIN_MAX_ITER, tol=p.tol,
                                         seed=p.seed + 17 * (i + 1), device=device,
                                         precision=p.precision,
                                         message="checking the fill's level"),
                copies)
            pred = _predict_hidden(part, W, present, p, ctx)
        t, n = _log_errors(part, pred)
        total += t
        count += n
    if count == 0:
        return None
    # Down only: see the docstring.
    return _gain_from_error(total / count, missing, freqs, GAIN_SHARE)


def _predict_hidden(part: np.ndarray, W: torch.Tensor, present: torch.Tensor,
                    p: Repair.Params, ctx: JobContext) -> np.ndarray:
    """``part`` float32 (bins, frames) as the fill predicts it: activations fitted on
    the ``present`` frequencies (bool (bins,)) only, with the templates ``W`` fixed, as
    the input's are; returns W H, float32 (bins, frames)."""
    Vt = torch.as_tensor(part).to(W.device)
    H = spectra.init_activations([Vt], W.shape[1], p.seed)
    lam = common.l1_weight(p.sparsity, p.beta, float(part.sum(0).mean()) / part.shape[0])
    O = [present.reshape(-1, 1).expand(-1, Vt.shape[1]).clone()]
    Wn, Hn, _ = fit_observed([Vt], O, W, H, lam, p, ctx, message="checking the fill's level")
    return Wn.cpu().numpy() @ Hn


def _log_errors(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, int]:
    """Σ over the frames with sound of log(truth) − log(prediction), float (bins,), and
    how many frames that is; ``truth``, ``pred`` float (bins, frames) magnitudes."""
    sounding = _sounding(truth)
    if not sounding.any():
        return np.zeros(truth.shape[0]), 0
    floor = float(truth.max()) * 1e-4  # as the log-spectral distance floors power at -80 dB
    err = (np.log(truth[:, sounding] + floor) - np.log(pred[:, sounding] + floor)).sum(axis=1)
    return err, int(sounding.sum())


def _gain_from_error(error: np.ndarray, missing: np.ndarray, freqs: np.ndarray,
                     share: float) -> np.ndarray:
    """The fill's scale float32 (bins,) from a mean log error (bins,) of its prediction:
    ``share`` of the error, smoothed over :data:`GAIN_SMOOTH_ERB` ERBs across the
    missing frequencies, downwards only and by at most :data:`GAIN_RANGE_DB`."""
    smooth = np.zeros(error.shape[0])
    smooth[missing] = erb_smooth(error[missing], np.ones(int(missing.sum())),
                                 erb_rate(freqs[missing]), GAIN_SMOOTH_ERB)[0]
    limit = GAIN_RANGE_DB / 20.0 * np.log(10.0)
    smooth = np.clip(share * smooth, -limit, 0.0)
    return np.where(missing, np.exp(smooth), 1.0).astype(np.float32)


#: Frames of the input in which every missing frequency is present, at least, for
#: :func:`gap_fill_gain` to check the fill on them.
GAP_CHECK_FRAMES = 16
#: Share of the level error found by that check that is corrected.
GAP_GAIN_SHARE = 1.0


def gap_fill_gain(V: list[torch.Tensor], observed: list[torch.Tensor], W: torch.Tensor,
                  missing: np.ndarray, freqs: np.ndarray, p: Repair.Params, ctx: JobContext
                  ) -> np.ndarray | None:
    """For an input with gaps (not a band limit): the fill's scale float32 (bins,),
    checked on the input itself; None when it has too few frames to check on.

    V, observed : the input's magnitude blocks (bins, B) and their bool present bins
    W : the templates float32 (bins, K) the fill will use

    The frequencies missing in the gaps are present in the input's other frames. In
    those (at most :data:`transposition.SAMPLE_FRAMES` of them, evenly spread runs;
    only they are copied) the missing
    frequencies are hidden, predicted from the rest of each frame with ``W`` as the
    fill is, and compared with what is there. Unlike the example's folds in
    :func:`fill_gain`, the templates were not learned on these frames, so the error
    is not overstated; it is corrected by :data:`GAP_GAIN_SHARE`, downwards only.

    Why: on a 1.6–5 kHz × 0.6 s gap in a trumpet's decaying tail (−54 dBFS) whose
    example is 35 dB louder and plays other notes, the check on the example's folds
    turned the fill down 1.9 dB, and it came out 9.4 dB louder than the truth in the
    gap, the repair worse than the gap left empty (the log-spectral distance 0.93 →
    1.36 dB at 16 kHz, 0.56 → 1.25 dB at 44.1 kHz); checked here, the fill is turned
    down 5.4 dB, comes out 3.6 dB louder than the truth, and the distance is 1.00 and
    0.75 dB: less harm, still some. The tail decays, and the gap's frames are quieter
    than most of those checked, but a check on the 16 frames nearest each side of the
    gap read the same error to 0.01 dB.

    Both checks run, and the fill takes the lower of their gains: this one alone
    missed an input whose bins are missing in most frames (a band limit the band
    search did not find), where the other frames hold attenuated remains, not the
    truth; :func:`band_like` now sends such an input down the band limit's path.
    Measured 2026-11-24 on the ten recordings of :func:`fill_gain` (60 repairs per
    rate), with :func:`band_like`: the gaps' mean reduction of the distance went from
    30.2 to 33.5 % at 16 kHz and from 22.1 to 30.1 % at 44.1 kHz (besides the trumpet,
    up to 5 points lost: a speaker's gap at 44.1 kHz, 33 → 28 %), and
    ``bench_nmf.py``'s cello gap from 31 to 34 %. This check alone, without the
    other: 33.3 % and 31.2 %; correcting half its error, 31.2 % at 16 kHz (the trumpet
    −34 %); both ways (raising a fill it reads as too quiet), the same as down only.
    """
    miss = torch.as_tensor(missing, device=W.device)
    # The frames to check: indices first, so that only those frames are copied.
    full = np.concatenate([(o[miss].all(dim=0) & o.any(dim=0)).cpu().numpy()
                           for o in observed])
    index = np.nonzero(full)[0]
    if index.size < GAP_CHECK_FRAMES:
        return None
    starts, run = transposition.run_starts(index.size)  # as sample_frames takes them
    index = index[(np.asarray(starts)[:, None] + np.arange(run)[None, :]).ravel()]
    edges = np.cumsum([0] + [b.shape[1] for b in V])
    pieces = []
    for i, b in enumerate(V):
        local = index[(index >= edges[i]) & (index < edges[i + 1])] - edges[i]
        if local.size:
            pieces.append(b[:, torch.as_tensor(local, device=b.device)].cpu().numpy())
    part = np.ascontiguousarray(np.concatenate(pieces, axis=1), dtype=np.float32)
    total, count = _log_errors(part, _predict_hidden(part, W, ~miss, p, ctx))
    if count == 0:
        return None
    return _gain_from_error(total / count, missing, freqs, GAP_GAIN_SHARE)


def fit_observed(V: list[torch.Tensor], O: list[torch.Tensor], W: torch.Tensor,
                 H: list[torch.Tensor], lam: float, p: Repair.Params, ctx: JobContext,
                 message: str = "fitting the observed bins"
                 ) -> tuple[torch.Tensor, np.ndarray, int]:
    """The activations of the input with the templates fixed, fitted on its observed
    bins; returns the templates the fill uses, float32 (bins, K), the activations
    float32 (K, frames) and the iterations run.

    V, O : the input's magnitude blocks (bins, B) and their bool observed bins
    W : float32 (bins, K) templates; H : per block, float32 (K, B), the start

    Only the frequencies observed in some frame and the frames that have a missing
    bin (with one frame each side, the neighbours that frames with nothing observed
    take their activations from) are fitted: a band limit leaves most frequencies
    out of the fit, a gap most frames. With the templates fixed, the other rows
    weigh nothing in the fit and the other frames' activations fill nothing, so
    this is the fit of them all, at a fraction of its cost (a minute of speech cut
    to 400–1600 Hz at 16 kHz: 77 of 513 frequencies, 3.0 s → 0.5 s). The templates'
    columns are first scaled as the engine scales them (unit L2 norm with an L1
    penalty, unit sum without), then their observed rows to that norm again, the
    activations' start and the penalty with them, so that the engine's own scaling
    is a no-op and every update is the one the full fit would make (the
    multiplicative update is unchanged when a column of W is divided by s, its row
    of H multiplied by s and its penalty divided by s). Frames with nothing observed
    take their neighbours' activations (:func:`_fill_unobserved_frames`); frames not
    fitted keep zeros, which fill nothing.
    """
    K = W.shape[1]
    l2 = lam != 0
    rows = O[0].any(dim=1)
    for o in O[1:]:
        rows |= o.any(dim=1)
    need = np.concatenate([(~o).any(dim=0).cpu().numpy() for o in O])
    need[1:] |= need[:-1].copy()
    need[:-1] |= need[1:].copy()
    has_data = np.concatenate([o.any(dim=0).cpu().numpy() for o in O])
    total = need.size
    if bool(rows.all()) and need.all():
        res = engine.fit(V, W, H, ctx, beta=p.beta, fixed_w=range(K), sparsity=lam,
                         observed=O, max_iter=p.max_iter, tol=p.tol, precision=p.precision,
                         message=message)
        Hn = res.h_numpy()
        _fill_unobserved_frames(Hn, has_data)
        return W, Hn, res.iterations

    full = engine.column_norms(W, l2)
    Wn = W / full
    s = engine.column_norms(Wn[rows], l2)
    Ws = Wn[rows] / s
    scale = (full * s).reshape(-1, 1)
    edges = np.cumsum([0] + [o.shape[1] for o in O])
    Vs, Os, Hs, fitted = [], [], [], []
    for i, (v, o, h) in enumerate(zip(V, O, H)):
        local = np.flatnonzero(need[edges[i]:edges[i + 1]])
        if local.size == 0:
            continue
        idx = torch.as_tensor(local, device=v.device)
        Vs.append(v[rows][:, idx].contiguous())
        Os.append(o[rows][:, idx].contiguous())
        Hs.append(h[:, idx] * scale)
        fitted.append(local + edges[i])
    res = engine.fit(Vs, Ws, Hs, ctx, beta=p.beta, fixed_w=range(K), sparsity=lam / s,
                     observed=Os, max_iter=p.max_iter, tol=p.tol, precision=p.precision,
                     message=message)
    del Vs, Os
    at = np.concatenate(fitted)
    # One copy of the activations from here on (an hour's are 0.24 GB at rank 192):
    # the blocks are dropped once gathered, the rest is done in place.
    Hf = res.h_numpy()
    Hs.clear()  # (res.H is this list)
    Hf /= s.reshape(-1, 1).cpu().numpy()
    _fill_unobserved_frames(Hf, has_data[at], times=at)
    if at.size == total:  # every frame fitted (a band limit): already in order
        return Wn, Hf, res.iterations
    Hn = np.zeros((K, total), dtype=np.float32)
    Hn[:, at] = Hf
    return Wn, Hn, res.iterations


#: Griffin–Lim runs on pieces of a block (``block_frames``) divided by this, at most
#: this many at once on the CPU's threads (FFTs and numpy's array arithmetic release
#: the GIL): the buffers in flight stay within one block's, and the pieces, hence the
#: output, are the same whatever the thread count.
GL_PIECES_AT_ONCE = 4


def _synthesise(mix: np.ndarray, cfg, W: np.ndarray, H: np.ndarray, observed, iters: int,
                block: int, ctx: JobContext) -> np.ndarray:
    """The input with its missing bins filled by ``W H``: float32 (channels, samples).

    W float32 (bins, K), H float32 (K, frames): the model of the channels' summed
    magnitude, which each channel shares (see :func:`channel_shares`); ``observed``
    the bool blocks of :meth:`Repair._observed`. Only the stretches
    around frames with a missing bin are synthesised again (:func:`fill_stretches`),
    at most ``block`` / :data:`GL_PIECES_AT_ONCE` frames at a time, that many pieces
    at once (see the module's docstring); elsewhere the output is the input, so a
    short gap in an hour costs the gap's Griffin–Lim, not the hour's.
    """
    n = mix.shape[1]
    hop = cfg.hop
    nfr = cfg.frames(n)
    fade = max(1, cfg.n_fft // hop)  # frames cross-faded on each side of a cut
    margin = 3 * fade  # context beyond the fade, so Griffin–Lim's own edges fall outside
    starts = np.cumsum([0] + [o.shape[1] for o in observed])

    def observed_frames(a: int, b: int) -> np.ndarray:
        parts = [o[:, max(a, s) - s:min(b, s + o.shape[1]) - s].cpu().numpy()
                 for o, s in zip(observed, starts) if s < b and s + o.shape[1] > a]
        return np.concatenate(parts, axis=1)

    need = np.concatenate([(~o).any(dim=0).cpu().numpy() for o in observed])
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
        y = _griffin_lim(mix[:, s0:s1], cfg, W @ H[:, a:b], ~observed_frames(a, b), iters,
                         lambda i: tick(k, i))
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


def _griffin_lim(x: np.ndarray, cfg, fill_mag: np.ndarray, missing: np.ndarray, iters: int,
                 tick: Callable[[int], None]) -> np.ndarray:
    """Fast Griffin–Lim on the missing bins only; observed bins keep the input's STFT.

    x float32 (channels, samples); fill_mag (bins, frames of x): the fill of the
    channels' summed magnitude, shared out among them (:func:`channel_shares`);
    missing bool (bins, frames); ``tick(i)`` is called before round i (it may raise to
    stop).
    """
    n = x.shape[1]
    # Y starts as the input's STFT and only its missing bins are ever written, so the
    # observed ones keep their own values; the loop reuses its buffers (fresh
    # full-size arrays each round cost as much again in page faults).
    Y = stft(x, cfg)
    mag = np.abs(Y)
    fill = fill_mag[None] * channel_shares(mag, missing)  # (channels, bins, frames)
    rng = np.random.default_rng(0)
    phase = np.exp(2j * np.pi * rng.random(fill_mag.shape)).astype(np.complex64)
    where = np.broadcast_to(missing[None], Y.shape)
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


def _fill_unobserved_frames(H: np.ndarray, has_data: np.ndarray,
                            times: np.ndarray | None = None) -> None:
    """The activations of frames with no observed bin, interpolated in place from
    their neighbours'.

    H float32 (K, n); has_data bool (n,); times (n,): the frames' indices (default
    0 … n − 1)."""
    if has_data.all() or not has_data.any():
        return
    t = np.arange(H.shape[1]) if times is None else times
    known, unknown = t[has_data], t[~has_data]
    for k in range(H.shape[0]):
        H[k, ~has_data] = np.interp(unknown, known, H[k, has_data])
