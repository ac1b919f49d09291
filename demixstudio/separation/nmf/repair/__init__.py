"""``repair``: bandwidth expansion and missing-data filling from an example.

A dictionary is learned on a full-band example recording of the same kind of
sound (``hints.examples``). The input's activations are fitted on the bins
that exist only (KL with a 0/1 weight per bin), and the model ``W H`` fills
the bins that don't: a band-limited recording brought back to full band, a
gap in time–frequency filled (Smaragdis, Raj & Shashanka 2011). Frames with
nothing observed (painted whole) take the activations of their nearest observed
neighbours. A narrow hole (a few bins missing in a frame) is filled no louder than
what is observed around it (:func:`.phase.cap_narrow_holes`). Dropouts, runs of
exact zeros inside sound, are filled first, in the waveform, by least-squares AR
interpolation (:mod:`.dropouts`); that needs no example.
The filled bins get their phase by fast Griffin–Lim iterations (with momentum)
in which the observed bins keep their own. Just outside a band limit, where the
input still holds the source turned down by the filter's skirt and its time course
follows the fill's, the fill is the input's own sound turned up to the fill's level
(:func:`.skirt.skirt_gains`).

Long inputs are repaired a block of frames at a time: the magnitudes, the
0/1 weights (bool) and the activations are the only full-length arrays besides
the input and the output, and the magnitude goes once the fit has copied what it
reads (:func:`.fit.fit_observed`'s ``release``; what the skirt needs of it is read
first: :func:`.skirt.skirt_reading`), and the synthesis reads the 0/1 weights
packed eight to a byte (:func:`.phase.pack_observed`); Griffin–Lim runs on pieces of
a quarter block, each
with a margin of context on both sides, up to four at once on the CPU's threads,
and neighbouring pieces are cross-faded over a few frames around each cut.

A bin counts as missing when its frequency lies outside the band the input occupies
(given as ``band_lo_hz``–``band_hi_hz``, or else found as the run of frequencies
whose long-term level is within ``band_db`` of what the example's spectrum predicts:
:func:`.missing.found_band`, its low end read on a Welch spectrum that shows a cut
next to a loud band as deep as it is: :func:`.missing.found_run`,
:mod:`.welch`; less the filter's skirt next to a cut:
:func:`.missing.without_skirt`), when it is ``floor_db`` below the input's loudest bin
and so is a neighbour (a lone bin that deep is a null: :func:`.missing.lone_bins`;
a frame wholly that deep is digital silence, left as it is),
or when it is painted (``hints.paint``, any target: a spectral repair's selection,
for a click, a cough or a damaged patch whose content is to be replaced). A found
band outside which the input keeps a share of its own energy (an example of another
kind of sound) is refused: :func:`.missing.check_found_band`. The output is one
waveform layer, "repaired": the input with its missing bins replaced by the fill
(for an empty gap, the input plus what was filled); the session's residual then
holds what was taken out less what was filled (mute it to hear the repair, or solo
"repaired"). Only the stretches around frames with a missing bin are fitted and
synthesised again (:func:`.fit.fit_observed`, :func:`.phase.fill_stretches`). A
repaired layer far louder than the input gets a note
(:func:`.method.level_change_db`). An example that has nothing where the input is
missing (recorded at a lower rate) is refused, and one that lacks part of it gets a
note (:func:`.missing.check_example_covers`).

The package: :mod:`.method` (the registry entry and its steps), :mod:`.dropouts`
(runs of digital zeros found and interpolated), :mod:`.missing`
(which bins are missing: the band, gaps, nulls; the checks of a found band and of
the example's reach), :mod:`.copies` (the templates' transposed copies and the
choice of them), :mod:`.level` (the checks of the fill's level), :mod:`.fit` (the
activations fitted on the present bins, and predictions of hidden ones) and
:mod:`.skirt` (the input's own sound in a band limit's skirt) and :mod:`.phase` (the
fill's phase by fast Griffin–Lim, a piece at a time).
"""

from demixstudio.separation.nmf.repair.method import Repair

__all__ = ["Repair"]
