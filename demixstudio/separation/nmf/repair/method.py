"""The ``repair`` method: its parameters and the order of its steps (see the
package's docstring); the steps live in the package's other modules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from demixstudio.audio.io import energy
from demixstudio.errors import ParameterError
from demixstudio.jobs import memory
from demixstudio.jobs.context import JobContext
from demixstudio.separation.base import (
    Hints,
    LayerProposal,
    Method,
    param,
    params_to_dict,
)
from demixstudio.separation.nmf import common, spectra
from demixstudio.separation.nmf.repair.copies import choose_copies, shifted_templates
from demixstudio.separation.nmf.repair.dropouts import fill_dropouts
from demixstudio.separation.nmf.repair.fit import fit_observed
from demixstudio.separation.nmf.repair.level import fill_gain, gap_fill_gain
from demixstudio.separation.nmf.repair.missing import (
    LongTerm,
    band_like,
    check_example_covers,
    check_found_band,
    floor_of,
    found_run,
    inner_level,
    lone_bins,
    missing_counts,
    run_without_skirt,
)
from demixstudio.separation.nmf.repair.phase import pack_observed, synthesise
from demixstudio.separation.nmf.repair.skirt import skirt_gains, skirt_reading
from demixstudio.separation.nmf.repair.welch import long_term_magnitude
from demixstudio.separation.registry import register


@register
class Repair(Method):
    name = "repair"
    title = "Repair (bandwidth, gaps)"
    summary = ("Bring back missing frequencies or fill time–frequency gaps from a full-band "
               "example of the same kind of sound; paint over a click, a cough or a damaged "
               "patch to have it replaced. Dropouts (short runs of digital zeros) are "
               "filled from the sound around them, with or without an example.")
    references = (
        "A. J. E. M. Janssen, R. N. J. Veldhuis, L. B. Vries, 'Adaptive interpolation of "
        "discrete-time signals that can be modeled as autoregressive processes', IEEE "
        "Trans. ASSP 34(2):317–330, 1986.",
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
                 "spectrum predicts are treated as missing (band limits); next to such a "
                 "cut, so is the filter's skirt, where the level is 6 dB or more down.")
        floor_db: float = param(
            120.0, label="Gap threshold (dB)", min=20.0, max=200.0,
            help="Bins this far below the loudest bin are treated as missing (gaps); a lone "
                 "one among louder bins is a null, not a gap, and is left as it is, and so "
                 "is a frame wholly this far down (digital silence: paint it to fill it).")
        band_lo_hz: float = param(
            0.0, label="Band low edge (Hz)", min=0.0,
            help="If the input's band is known (a telephone line: 300–3400 Hz), its lower "
                 "edge; everything below is missing. 0 = find the band from the levels.")
        band_hi_hz: float = param(
            0.0, label="Band high edge (Hz)", min=0.0,
            help="Upper edge of a known band; everything above is missing. 0 = find it.")
        phase_iter: int = param(15, label="Phase iterations", min=0, max=1000,
                                help="Fast Griffin–Lim iterations for the phase of filled "
                                     "bins (0 = random phases, or the input's own where a "
                                     "filter only turned the sound down).")
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
        dropout_ms: float = param(
            100.0, label="Longest dropout (ms)", min=0.0, max=1000.0,
            help="Runs of exact digital zeros inside sound (a lost packet, a bad edit), "
                 "from 1 ms up to this long, are filled from the samples around them by "
                 "least-squares autoregressive interpolation before anything else (see "
                 "repair.dropouts); this needs no example. Longer runs are left to the "
                 "spectral repair (paint them). 0 = off.")
        keep_skirt: bool = param(
            True, label="Keep the filter's skirt", advanced=True,
            help="Just outside a band limit, where the input still holds the source "
                 "turned down (its time course follows the fill's), use the input's own "
                 "sound turned up to the fill's level instead of the model's (see "
                 "skirt_gains). Off = the model's fill there too.")

    def separate(self, mix: np.ndarray, sr: int, params: Repair.Params, hints: Hints,
                 ctx: JobContext) -> list[LayerProposal]:
        """One waveform proposal float32 (channels, samples): the repaired input."""
        examples = [h for hs in hints.examples.values() for h in hs]
        mix = np.asarray(mix, dtype=np.float32)
        with ctx.stage(0.0, 0.02, "filling dropouts"):
            mix, dropouts, dropout_s = fill_dropouts(mix, sr, params.dropout_ms / 1000.0)
        filled = {"dropouts_filled": dropouts, "dropout_seconds": round(dropout_s, 4)}
        if not examples:
            if not dropouts:
                raise ParameterError("repair needs a full-band example recording "
                                     "(--hint example:NAME=FILE); without one it fills "
                                     "dropouts only, and this input has none")
            return [LayerProposal("repaired", self.name, params_to_dict(params),
                                  waveform=mix, extra={**filled, "note": (
                                      f"{dropouts} dropout(s) filled; without an example "
                                      f"no missing band or gap was looked for")})]
        m = common.open_mixture(self, mix, sr, params, ctx)
        what = "the full-band example"
        signals = list(spectra.example_signals(examples, sr, what))
        # One magnitude serves for the dictionary and for the expected spectrum.
        Ve = spectra.signals_magnitude(signals, sr, m.cfg, what)
        # The band search's deeper spectra, read only when the band is to be found.
        deep = (None if self._band_given(params) else
                (long_term_magnitude([mix], m.cfg), long_term_magnitude(signals, m.cfg)))
        del signals
        _, W, _ = common.hinted_templates({"example": examples}, sr, m, params.components,
                                          params, ctx, "example", (0.05, 0.4),
                                          magnitudes={"example": Ve})
        freqs = m.cfg.bin_freqs(sr)
        O, limited = self._observed(m, params, freqs, Ve.mean(axis=1), deep)
        memory.return_freed()  # the band search's and the floor's leavings
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
            info = {"missing_fraction": 0.0, **filled, "note": (
                "nothing more to repair: the input has every frequency the example's "
                "spectrum has, so the layer is the input as it is, its dropouts filled "
                "(give band_lo_hz/band_hi_hz if the band is known)" if dropouts else
                "nothing to repair: the input has every frequency the example's spectrum "
                "has, so the layer is the input as it is (give band_lo_hz/band_hi_hz if "
                "the band is known)")}
            # fill_dropouts made a copy when it filled anything.
            return [LayerProposal("repaired", self.name, params_to_dict(params),
                                  waveform=mix if dropouts else mix.copy(), extra=info)]
        W = shifted_templates(W, copies)
        # What the skirt needs of the magnitude is read now: the fit lets it go.
        reading = skirt_reading(m.V, O, freqs) if limited and params.keep_skirt else None
        with ctx.stage(0.55, 0.8, "fitting the observed bins"):
            lam = common.l1_weight(params.sparsity, params.beta, m.mean_frame / m.cfg.bins)
            # Neither the magnitude nor the start is kept past what the fit reads of
            # them (an hour of 44.1 kHz audio: 1.27 GB and, at rank 192, 0.24 GB).
            W, Hn, iterations = fit_observed(
                m.V, O, W, spectra.init_activations(m.V, W.shape[1], params.seed), lam,
                params, ctx, release=True)
        Wf = W.cpu().numpy()
        if gain is not None:
            Wf *= gain[:, None]
        skirt = skirt_gains(reading, Wf, Hn)
        del reading
        O = pack_observed(O)  # an eighth of the size, for the synthesis
        memory.return_freed()  # the fit's leavings, before the output is allocated
        with ctx.stage(0.8, 1.0, "phase"):
            out = synthesise(mix, m.cfg, Wf, Hn, O, params.phase_iter,
                             params.block_frames, ctx, skirt=skirt)
        info = {"missing_fraction": n_missing / float(m.cfg.bins * m.frames), **filled,
                "iterations": iterations, "semitone_copies_used": copies,
                "skirt_bins_kept": 0 if skirt is None else int((skirt > 0).sum())}
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
    def _band_given(p: Repair.Params) -> bool:
        """Whether the user gave the input's band (else it is found)."""
        return p.band_lo_hz > 0 or p.band_hi_hz > 0

    @staticmethod
    def _observed(m: common.Mixture, p: Repair.Params, freqs: np.ndarray,
                  expected: np.ndarray, deep: tuple[np.ndarray, np.ndarray] | None
                  ) -> tuple[list[torch.Tensor], bool]:
        """Per block of ``m.V``, bool (bins, B): the bins that exist in the input; and
        whether the input is band-limited (given, or found so).

        ``expected`` (bins,) is the example's long-term magnitude: a frequency is
        missing when the input's long-term level there falls ``band_db`` below what
        that spectrum predicts (relative to the well-matched frequencies), so a
        naturally quiet band of a full-band input is not mistaken for a cut one.
        ``deep`` is the input's and the example's Welch spectra (``welch``), for the
        band's low end (:func:`.missing.found_run`); None when the band is given.
        """
        floor = floor_of(m.V, p.floor_db)
        if Repair._band_given(p):
            hi = p.band_hi_hz if p.band_hi_hz > 0 else np.inf
            in_band = (freqs >= p.band_lo_hz) & (freqs <= hi)
        else:
            # The level over the bins above the floor: those under it are found as
            # gaps below, and a gap must not read as a band limit (inner_level).
            long_term = LongTerm(inner_level(m.V, m.cfg, floor), expected, *deep)
            in_band = found_run(long_term, freqs, p.band_db)
            check_found_band(m.V, in_band, freqs)
            in_band = run_without_skirt(in_band, long_term, freqs)
        band = torch.as_tensor(in_band, device=m.device).reshape(-1, 1)
        # The bins under the floor, held for a block and its two neighbours only (the
        # blocks' edges meet in lone_bins): whole, they are as large as the result.
        n = len(m.V)
        below: list[torch.Tensor | None] = [None] * n
        observed = []
        for i in range(n):
            for j in range(i, min(i + 2, n)):
                if below[j] is None:
                    below[j] = m.V[j] <= floor
                    # A frame wholly under the floor is digital silence (a pause, the
                    # end of a file), not a loss: filled from its neighbours, a
                    # bark's trailing 2.3 s of zeros held its last frame's sound.
                    below[j][:, below[j].all(dim=0)] = False
            if i >= 2:
                below[i - 2] = None
            observed.append(~(below[i] & ~lone_bins(below, i)) & band)
        return observed, not bool(in_band.all())


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
