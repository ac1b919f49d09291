"""``repair`` on ten recordings, six kinds of damage each, against scikit-learn.

``bench_nmf.py --only repair`` measures the acceptance's cases (a speech and a cello
excerpt). This measures it on ten other recordings of ../shared/audio (speech,
singing, instruments, two bands' stems; chosen as untuned, but sessions 51–63 tuned
``repair`` on them, so ``--heldout`` below is the untouched measure), each split in
two: the first half (at most 7 s) is the full-band example, the second half the
input, damaged six ways:

- cut to 400–1600 Hz, the band given (``band_lo_hz``/``band_hi_hz``) and found;
- cut to 300–3400 Hz (a telephone's band), given and found;
- low-passed at 4 kHz, found;
- a 1.6–5 kHz × 0.6 s gap (STFT bins zeroed from 0.64 s), found by its floor.

For each it prints the reduction of the log-spectral distance to the undamaged
input (``spectra.log_spectral_distance``; positive = closer) and the time, and
where the missing bins are known (a band given, the low-pass, the gap) the same for
scikit-learn told those bins (``bench_nmf.sklearn_repair``: a KL/MU dictionary,
activations fitted on the observed bins, the input's phase). Then the mean, the
median, how many repairs fall short of 30 % and how many do harm, per setting.

``--lowpass 8000,16000`` damages each input by those low-passes instead (10th
order; the band given as ``band_hi_hz`` and found): a recording made at a lower rate
and brought up to this one, an MP3's cut at 16 kHz. Where the original has next to
nothing above the cut (a recording already band-limited), the distance before is a
few hundredths of a dB and its relative change says little: each row prints the
distance before too. ``--highpass 150,400`` does the same with high-passes (the band
given as ``band_lo_hz`` and found): a small loudspeaker's or a rumble filter's cut.

``--heldout`` runs the same six damages on the other 24 recordings of ../shared/audio
(neither the ten nor bench_nmf.py's cases: two bands' bass, drums and other stems,
six environmental recordings, a frame drum, a vibraphone's note, eight SiSEC
speakers, a LibriSpeech speaker, a Carnatic singer): where the method was never tuned. A
refusal (a ``DemixError``, the input left as it was) counts as 0 %; a damage that
took nothing away (a gap in digital silence) is not counted.

Settings are compared with ``--variant NAME:key=value,...`` (as ``--set`` on the
command line):

    .venv/bin/python benchmarks/bench_repair_set.py [--sr 44100] \\
        [--variant default --variant raw:phase_iter=0] [--no-peer] [--only sax] [--heldout]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import nmf_cases as nc  # noqa: E402
from conftest import SHARED_AUDIO  # noqa: E402

from demixstudio.audio.stft import StftConfig  # noqa: E402
from demixstudio.errors import DemixError  # noqa: E402
from demixstudio.jobs.context import NullContext  # noqa: E402
from demixstudio.separation import AudioHint, Hints, get_method, make_params  # noqa: E402
from demixstudio.separation.nmf.spectra import log_spectral_distance  # noqa: E402

#: The recordings: none of them is one of bench_nmf.py's repair cases.
RECORDINGS = (
    "solo_voice/speech-female.wav",
    "solo_voice/speech-male.wav",
    "solo_voice/singing-female.wav",
    "solo_instruments/sax-phrase.wav",
    "solo_instruments/trumpet.wav",
    "solo_instruments/piano.wav",
    "bearlin_roads/vocals.wav",
    "bearlin_roads/piano.wav",
    "easton_ellises_falcon69/vocals.wav",
    "speech_librispeech/198-209-0000.wav",
)
#: bench_nmf.py's own repair cases, left out of ``--heldout`` too.
ACCEPTANCE = ("speech_librispeech/5703-47212-0000.wav", "solo_instruments/cello-phrase.wav")
MAX_S = 7.0
#: A damage whose log-spectral distance is under this (dB) took nothing away.
NOTHING_LOST_DB = 1e-3


def heldout_recordings() -> tuple[str, ...]:
    """Every recording of ../shared/audio that neither :data:`RECORDINGS` nor
    bench_nmf.py's repair cases use: the method measured where it was never tuned."""
    root = Path(os.environ.get("DEMIX_SHARED_AUDIO") or SHARED_AUDIO)
    names = sorted(f.relative_to(root).as_posix() for f in root.rglob("*.wav"))
    return tuple(n for n in names if n not in RECORDINGS and n not in ACCEPTANCE)


def damages(x: np.ndarray, sr: int, cfg: StftConfig, lowpass: tuple[float, ...] = (),
            highpass: tuple[float, ...] = ()):
    """(label, damaged float32 (1, n), params, missing bool (bins, frames) or None);
    with ``lowpass`` or ``highpass`` (Hz), those filters only."""
    from scipy.signal import butter, sosfiltfilt

    from bench_nmf import cut_gap, outside_band

    frames = cfg.frames(x.shape[1])
    out = []
    if lowpass or highpass:
        for hz in lowpass:
            sos = butter(10, hz, btype="low", fs=sr, output="sos")
            y = sosfiltfilt(sos, x).astype(np.float32)
            out.append((f"under {hz / 1000:g} kHz, given", y, {"band_hi_hz": hz},
                        outside_band(0.0, hz, sr, cfg, frames)))
            out.append((f"under {hz / 1000:g} kHz, found", y, {}, None))
        for hz in highpass:
            sos = butter(10, hz, btype="high", fs=sr, output="sos")
            y = sosfiltfilt(sos, x).astype(np.float32)
            out.append((f"over {hz:g} Hz, given", y, {"band_lo_hz": hz},
                        outside_band(hz, sr / 2.0, sr, cfg, frames)))
            out.append((f"over {hz:g} Hz, found", y, {}, None))
        return out
    for lo, hi in ((400.0, 1600.0), (300.0, 3400.0)):
        sos = butter(10, [lo, hi], btype="band", fs=sr, output="sos")
        y = sosfiltfilt(sos, x).astype(np.float32)
        out.append((f"{lo:.0f}-{hi:.0f} Hz, given", y,
                    {"band_lo_hz": lo, "band_hi_hz": hi}, outside_band(lo, hi, sr, cfg, frames)))
        out.append((f"{lo:.0f}-{hi:.0f} Hz, found", y, {}, None))
    sos = butter(10, 4000.0, btype="low", fs=sr, output="sos")
    out.append(("under 4 kHz, found", sosfiltfilt(sos, x).astype(np.float32), {},
                outside_band(0.0, 4000.0, sr, cfg, frames)))
    gap, mask = cut_gap(x, sr, cfg)
    out.append(("gap 1.6-5 kHz x 0.6 s", gap, {}, mask))
    return out


def summary(label: str, gains: list[float]) -> str:
    g = np.asarray(gains) * 100
    return (f"{label:22s} mean {g.mean():5.1f} %  median {np.median(g):5.1f} %  "
            f"min {g.min():6.1f} %  short of 30 %: {int((g < 30).sum()):2d}  "
            f"harm: {int((g < 0).sum())}  (of {g.size})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sr", type=int, default=nc.SR)
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:key=value,... (repeatable; default: the defaults)")
    ap.add_argument("--no-peer", action="store_true", help="skip scikit-learn")
    ap.add_argument("--only", default="", help="recordings whose path contains this")
    ap.add_argument("--damage", default="",
                    help="only the damages whose label contains this (e.g. gap)")
    ap.add_argument("--heldout", action="store_true",
                    help="the recordings of ../shared/audio the set and bench_nmf.py's "
                         "repair cases leave out, instead of the set's ten")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lowpass", default="",
                    help="HZ,HZ,...: low-passes at these frequencies instead of the six "
                         "damages")
    ap.add_argument("--highpass", default="",
                    help="HZ,HZ,...: high-passes at these frequencies instead (with "
                         "--lowpass, both)")
    args = ap.parse_args()
    import bench_nmf

    sr = args.sr
    cfg = StftConfig.for_rate(sr)
    m = get_method("repair")
    variants = []
    for text in args.variant or ["default"]:
        name, _, rest = text.partition(":")
        values = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
        make_params(m.Params, strings=values)  # checked now, not after the first case
        variants.append((name, values))
    gains: dict[str, list[float]] = {name: [] for name, _ in variants}
    times: dict[str, float] = {name: 0.0 for name, _ in variants}
    refused: dict[str, int] = {name: 0 for name, _ in variants}
    peer: list[float] = []
    peer_t = 0.0
    told: list[int] = []  # the repairs the peer also made (its bins known)
    lowpass = tuple(float(v) for v in args.lowpass.split(",") if v)
    highpass = tuple(float(v) for v in args.highpass.split(",") if v)
    recordings = heldout_recordings() if args.heldout else RECORDINGS
    print(f"== repair on {len(recordings)} recordings at {sr} Hz: the damaged "
          f"input's log-spectral distance, its reduction by each setting (time)")
    for rel in recordings:
        if args.only not in rel:
            continue
        whole = nc.load(rel, sr).astype(np.float32)
        half = min(whole.size // 2, int(MAX_S * sr))
        example = whole[:half][None]
        x = whole[whole.size // 2:whole.size // 2 + half][None]
        hints = Hints(examples={"x": [AudioHint(example, sr)]})
        for label, damaged, values, missing in damages(x, sr, cfg, lowpass, highpass):
            if args.damage not in label:
                continue
            a = log_spectral_distance(x, damaged, cfg)
            where = f"  {Path(rel).parent.name[:12]:12s} {Path(rel).stem[:18]:18s} {label:24s} "
            if a < NOTHING_LOST_DB:
                # The damage fell on digital silence (a gap in a bark's trailing zeros):
                # there is nothing to restore and no ratio to take.
                print(where + f"{a:.1e} dB: nothing lost, not counted", flush=True)
                continue
            row = [f"{a:5.2f} dB"]
            for name, extra in variants:
                p = make_params(m.Params, {"device": args.device,
                                           "precision": bench_nmf.PRECISION, **values},
                                extra)
                t = time.perf_counter()
                try:
                    out = m.separate(damaged, sr, p, hints, NullContext())[0].waveform
                except DemixError as e:
                    # A refusal leaves the user's input as it was: counted as 0 %.
                    out, why = damaged, f" refused: {str(e)[:60]}"
                    refused[name] += 1
                else:
                    why = ""
                dt = time.perf_counter() - t
                g = 1 - log_spectral_distance(x, out, cfg) / a
                gains[name].append(g)
                times[name] += dt
                row.append(f"{name} {g:+6.1%} ({dt:.1f} s){why}")
            if missing is not None and not args.no_peer:
                told.append(len(gains[variants[0][0]]) - 1)
                t = time.perf_counter()
                out = bench_nmf.sklearn_repair(damaged, example, missing, sr,
                                               m.Params().components)
                peer_t += time.perf_counter() - t
                g = 1 - log_spectral_distance(x, out, cfg) / a
                peer.append(g)
                row.append(f"scikit-learn, told {g:+6.1%}")
            print(where + "  ".join(row), flush=True)
    for name, _ in variants:
        print(summary(name, gains[name]) + f"  refused: {refused[name]}  "
              f"{times[name]:.0f} s in all")
    if peer:
        print("Where the peer is told the missing bins (the given bands, the low-pass, "
              "the gap):")
        for name, _ in variants:
            print(summary(name, [gains[name][i] for i in told]))
        print(summary("scikit-learn, told", peer) + f"  {peer_t:.0f} s in all")


if __name__ == "__main__":
    main()
