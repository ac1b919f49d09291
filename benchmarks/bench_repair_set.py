"""``repair`` on ten recordings, six kinds of damage each, against scikit-learn.

``bench_nmf.py --only repair`` measures the acceptance's cases (a speech and a cello
excerpt). This measures the method where it was not tuned: ten other recordings of
../shared/audio (speech, singing, instruments, two bands' stems), each split in
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

Settings are compared with ``--variant NAME:key=value,...`` (as ``--set`` on the
command line):

    .venv/bin/python benchmarks/bench_repair_set.py [--sr 44100] \\
        [--variant default --variant raw:phase_iter=0] [--no-peer] [--only sax]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import nmf_cases as nc  # noqa: E402

from demixstudio.audio.stft import StftConfig  # noqa: E402
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
MAX_S = 7.0


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
    peer: list[float] = []
    peer_t = 0.0
    told: list[int] = []  # the repairs the peer also made (its bins known)
    lowpass = tuple(float(v) for v in args.lowpass.split(",") if v)
    highpass = tuple(float(v) for v in args.highpass.split(",") if v)
    print(f"== repair on {len(RECORDINGS)} recordings at {sr} Hz: the damaged "
          f"input's log-spectral distance, its reduction by each setting (time)")
    for rel in RECORDINGS:
        if args.only not in rel:
            continue
        whole = nc.load(rel, sr).astype(np.float32)
        half = min(whole.size // 2, int(MAX_S * sr))
        example = whole[:half][None]
        x = whole[whole.size // 2:whole.size // 2 + half][None]
        hints = Hints(examples={"x": [AudioHint(example, sr)]})
        for label, damaged, values, missing in damages(x, sr, cfg, lowpass, highpass):
            a = log_spectral_distance(x, damaged, cfg)
            row = [f"{a:5.2f} dB"]
            for name, extra in variants:
                p = make_params(m.Params, {"device": args.device,
                                           "precision": bench_nmf.PRECISION, **values},
                                extra)
                t = time.perf_counter()
                out = m.separate(damaged, sr, p, hints, NullContext())[0].waveform
                dt = time.perf_counter() - t
                g = 1 - log_spectral_distance(x, out, cfg) / a
                gains[name].append(g)
                times[name] += dt
                row.append(f"{name} {g:+6.1%} ({dt:.1f} s)")
            if missing is not None and not args.no_peer:
                told.append(len(gains[variants[0][0]]) - 1)
                t = time.perf_counter()
                out = bench_nmf.sklearn_repair(damaged, example, missing, sr,
                                               m.Params().components)
                peer_t += time.perf_counter() - t
                g = 1 - log_spectral_distance(x, out, cfg) / a
                peer.append(g)
                row.append(f"scikit-learn, told {g:+6.1%}")
            print(f"  {Path(rel).parent.name[:12]:12s} {Path(rel).stem[:14]:14s} "
                  f"{label:24s} " + "  ".join(row), flush=True)
    for name, _ in variants:
        print(summary(name, gains[name]) + f"  {times[name]:.0f} s in all")
    if peer:
        print("Where the peer is told the missing bins (the given bands, the low-pass, "
              "the gap):")
        for name, _ in variants:
            print(summary(name, [gains[name][i] for i in told]))
        print(summary("scikit-learn, told", peer) + f"  {peer_t:.0f} s in all")


if __name__ == "__main__":
    main()
