"""The NMF family on real two-source mono mixtures, against scikit-learn.

For each case of tests/nmf_cases.py (voice+bass, speech+speech, speech+noise,
instrument+instrument; 16 kHz, 0 dB, examples from *other* excerpts):

- ``nmf-supervised`` (with its default three-frame templates and discriminative
  reconstruction templates)
  vs scikit-learn's NMF used the same way: a KL/MU
  dictionary of the same size learned from the same example per source
  (``NMF.fit``), then activations fitted to the mixture with the dictionaries
  held fixed (``non_negative_factorization(update_H=False)`` on the transposed
  problem), then the same soft masks;
- ``nmf`` (unsupervised, best permutation) vs the NMF-MFCC pipeline a user would
  build from scikit-learn and librosa (KL/MU NMF of the mixture's magnitude with
  as many components, k-means on the templates' MFCCs, the same masks); also with
  ``cluster_on=mfcc``, its grouping before 2026-11-24, and the paint's and hum's
  gains over that),
  ``nmf-semisupervised`` with an
  example of the first source only, ``nmf-paint`` with a coarse
  simulated painting (rectangles over ~30 % of the bins where each source
  dominates by ≥ 6 dB; 500 Hz × 0.25 s, and smaller where those run out:
  ``--coarse-paint`` keeps only the big ones, as before 2026-11-22), then one simulated round of corrections (``not:NAME``
  paint over what each layer holds of the other source) and ``Session.rerun``
  (the refinement loop), ``nmf-hum`` with the target's example excerpt as the
  hum (not time-aligned), and with that excerpt pitch-shifted up 3 semitones
  (resampled, so its formants move too and it is shorter: a rough imitation),
  and with the target's own passage in the mixture pitch-shifted the same way, as
  it is and darker (``hum-along``, ``hum-along-dark``: the user singing or humming
  along with the passage in another key, Smaragdis & Mysore's setting; the other
  reading of the acceptance's "or a pitch-shifted one"),
  each with ``nmf-hum``'s defaults (a pitch search of ±3 semitones) and with
  the search off (``transpose_search=0``), and with that excerpt darker (as a
  hum) and thinner (as a phone) (``nc.recoloured``), as it is and with its
  balance matched to the mixture's (``equalize=true``);
- ``repair`` on band-limited (400–1600 Hz) speech and on a time–frequency gap:
  log-spectral distance to the original before and after; also without its
  Griffin–Lim phase (``phase_iter=0``), and the same done with scikit-learn (a KL/MU
  dictionary of the example, activations fitted on the observed bins with it held
  fixed, the model in the missing bins with the input's phase), which is told which
  bins are missing.

Prints SDR per source and case, the medians and the differences.

    .venv/bin/python benchmarks/bench_nmf.py [--only supervised,unsup,semi,paint,hum,repair]
        [--seeds 0,1,2]
        [--seconds 4]   (only the first 4 s of each mixture, as in the tests)
        [--heldout [2|3|4]] (mixtures of other recordings, never used for tuning)
        [--sr 44100]    (the same recordings at another rate: 16 kHz by default)
        [--precision bfloat16] (the products' precision; float32 by default)
        [--coarse-paint] (paint with 500 Hz x 0.25 s rectangles only: less than 30 % of
                          some sources' dominant bins)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import nmf_cases as nc

from demixstudio.audio.stft import StftConfig, istft, stft
from demixstudio.jobs.context import NullContext
from demixstudio.separation import AudioHint, Hints, get_method, make_params
from demixstudio.separation.base import PaintHint
from demixstudio.separation.nmf.spectra import log_spectral_distance


def sklearn_supervised(case: nc.Case, rank: int, power: float) -> np.ndarray:
    """scikit-learn's KL/MU NMF in our supervised pipeline, with our masks (``power``)."""
    from sklearn.decomposition import NMF, non_negative_factorization
    from sklearn.exceptions import ConvergenceWarning

    cfg = StftConfig.for_rate(case.sr)
    comps = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for n in case.names:
            V = np.abs(stft(case.examples[n], cfg)[0]).T.astype(np.float32) + 1e-9
            m = NMF(n_components=rank, beta_loss="kullback-leibler", solver="mu",
                    max_iter=200, init="nndsvda", random_state=0)
            m.fit(V)
            comps.append(m.components_)
        D = np.concatenate(comps)
        X = np.abs(stft(case.mix, cfg)[0]).T.astype(np.float32) + 1e-9
        A, _, _ = non_negative_factorization(X, H=D, n_components=D.shape[0], update_H=False,
                                             beta_loss="kullback-leibler", solver="mu",
                                             max_iter=200)
    parts = [(A[:, i * rank:(i + 1) * rank] @ D[i * rank:(i + 1) * rank]) ** power
             for i in range(2)]
    tot = parts[0] + parts[1] + 1e-30
    return nc.apply_masks(case, [(p / tot).T[None].astype(np.float32) for p in parts])


def sklearn_unsupervised(case: nc.Case, rank: int, power: float, seed: int) -> np.ndarray:
    """The textbook NMF-MFCC pipeline built from the libraries a user has: scikit-learn's
    KL/MU NMF of the mixture's magnitude (``rank`` components, 200 updates), librosa's
    MFCCs 1-12 of each template's mel spectrum, scikit-learn's k-means into two groups,
    then the same soft masks (``power``) as ours. Estimates (2, 1, n)."""
    import librosa
    from sklearn.cluster import KMeans
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    cfg = StftConfig.for_rate(case.sr)
    X = np.abs(stft(case.mix, cfg)[0]).T.astype(np.float32) + 1e-9        # (frames, bins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = NMF(n_components=rank, beta_loss="kullback-leibler", solver="mu", max_iter=200,
                init="random", random_state=seed)
        A = m.fit_transform(X)                                                # (frames, K)
    D = m.components_                                                         # (K, bins)
    mel = librosa.feature.melspectrogram(S=(D ** 2).T, sr=case.sr, n_fft=cfg.n_fft)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=13)[1:].T  # (K, 12)
    labels = KMeans(2, n_init=10, random_state=seed).fit_predict(mfcc)
    parts = [(A[:, labels == g] @ D[labels == g]) ** power for g in range(2)]
    tot = parts[0] + parts[1] + 1e-30
    return nc.apply_masks(case, [(q / tot).T[None].astype(np.float32) for q in parts])


def sklearn_repair(x: np.ndarray, example: np.ndarray, missing: np.ndarray, sr: int,
                   rank: int) -> np.ndarray:
    """Filling missing bins the way a scikit-learn user would: a KL/MU dictionary of
    ``rank`` templates learned on the example's magnitude (``NMF.fit``), activations of
    each frame fitted on its observed bins with the dictionary held fixed
    (``non_negative_factorization(update_H=False)`` on the observed rows, one call per
    pattern of missing bins),
    the model's magnitude in the missing bins with the input's own phase there.

    ``x``: (1, n) damaged input; ``missing``: bool (bins, frames), True where a bin is
    missing (the peer is told, where ``repair`` may have to find them). Returns (1, n)."""
    from sklearn.decomposition import NMF, non_negative_factorization
    from sklearn.exceptions import ConvergenceWarning

    cfg = StftConfig.for_rate(sr)
    E = np.abs(stft(example, cfg)[0]).T.astype(np.float32) + 1e-9
    X = stft(x, cfg)
    M = np.abs(X[0]).T.astype(np.float32) + 1e-9                              # (frames, bins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = NMF(n_components=rank, beta_loss="kullback-leibler", solver="mu", max_iter=200,
                init="nndsvda", random_state=0).fit(E)
        D = m.components_.copy()                                              # (K, bins)
        patterns, which = np.unique(missing.T, axis=0, return_inverse=True)
        for i, gone in enumerate(patterns):
            frames = np.flatnonzero(which.ravel() == i)
            if not gone.any() or gone.all():
                continue
            A, _, _ = non_negative_factorization(
                M[frames][:, ~gone], H=D[:, ~gone], n_components=rank, update_H=False,
                beta_loss="kullback-leibler", solver="mu", max_iter=200)
            fill = A @ D[:, gone]
            phase = np.exp(1j * np.angle(X[0][gone][:, frames]))
            X[0][np.ix_(gone, frames)] = fill.T * phase
    return istft(X, x.shape[1], cfg).astype(np.float32)


#: The methods' ``precision`` (``--precision``).
PRECISION = "float32"


def run(name, case, hints, **values):
    values.setdefault("precision", PRECISION)
    m = get_method(name)
    t = time.perf_counter()
    props = m.separate(case.mix, case.sr, make_params(m.Params, values), hints, NullContext())
    return props, time.perf_counter() - t


def fmt(v):
    return "[" + ", ".join(f"{x:6.2f}" for x in v) + "]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="supervised,unsup,semi,paint,hum,repair")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", default="0",
                    help="comma-separated seeds of every method's random start (nmf, the "
                         "dictionaries, paint, hum); figures are given per seed and averaged")
    ap.add_argument("--seconds", type=float, default=None,
                    help="keep only the first SECONDS of every case's mixture (the tests use 4): "
                         "less of the mixture to learn from, the same examples")
    ap.add_argument("--sr", type=int, default=nc.SR,
                    help="sample rate of every case (default 16000; 44100 for the rate of "
                         "most music: more bins, the same recordings)")
    ap.add_argument("--heldout", type=int, nargs="?", const=1, default=0,
                    choices=(0, 1, 2, 3, 4),
                    help="run a held-out set of tests/nmf_cases.py (other recordings, never "
                         "used to tune a method) instead of the four usual mixtures: 1 (the "
                         "default of a bare --heldout), 2 or 3 (a second and a third set, made "
                         "on 2026-11-23), 4 (eight new pairings, 2026-11-25): see "
                         "tests/nmf_cases.py")
    ap.add_argument("--long", type=float, default=0.0, metavar="MINUTES",
                    help="instead: peak memory and time of repair on MINUTES of band-limited "
                         "stereo at 44.1 kHz (alone in its process, so the peak is its own)")
    ap.add_argument("--coarse-paint", action="store_true",
                    help="simulate the painting with 500 Hz x 0.25 s rectangles only (the "
                         "simulation before 2026-11-22): where they run out, some sources "
                         "get less than the 30 %% cover the acceptance asks")
    ap.add_argument("--precision", default="float32", choices=("auto", "float32", "bfloat16"),
                    help="the methods' matrix-product precision (float32, their default; "
                         "auto: bfloat16 where it is native and timed faster, else float32)")
    args = ap.parse_args()
    global PRECISION
    PRECISION = args.precision
    # Tile scales of the simulated painting (see nmf_cases.dominance_paint).
    scales = (1,) if args.coarse_paint else (1, 2, 4)
    if args.long:
        long_repair(args.long, args.device)
        return
    only = set(args.only.split(","))
    cases = nc.cases(sr=args.sr, seconds=args.seconds, heldout=args.heldout)
    seeds = [int(x) for x in args.seeds.split(",")]
    summary = {}
    for seed in seeds:
        print(f"##### seed {seed}", flush=True)
        summary[seed] = one_seed(cases, only, args.device, seed, scales)
    if len(seeds) > 1 and summary[seeds[0]]:
        print("== over seeds: mean (min .. max) of each figure")
        for key in summary[seeds[0]]:
            v = np.array([summary[s][key] for s in seeds])
            print(f"  {key:40s} {v.mean():+6.2f}  ({v.min():+.2f} .. {v.max():+.2f})")
    if "repair" in only:
        repair_cases(args.device, args.sr)


def one_seed(cases, only: set, device: str, seed: int,
             scales: tuple[int, ...] = (1, 2, 4)) -> dict[str, float]:
    """Every case with one seed; prints the SDRs and returns the summary figures.

    ``scales``: tile scales of the simulated painting (``nc.dominance_paint``)."""
    rows = {k: [] for k in ("ours", "sklearn", "nmf", "sk-unsup", "nmf-mfcc", "semi", "paint", "paint-rnd",
                            "paint+fix", "hum", "hum+3st", "hum-nosearch", "hum+3st-nosearch",
                            "hum-dark", "hum-thin", "hum-dark-eq", "hum-thin-eq",
                            "hum-along", "hum-along-dark")}
    for case in cases:
        print(f"== {case.label} ({case.mix.shape[1] / case.sr:.1f} s)", flush=True)
        ex = Hints(examples={n: [AudioHint(case.examples[n], case.sr)] for n in case.names})
        if "supervised" in only:
            # Both timed from the mixture to the separated signals (masks applied),
            # neither with the scoring.
            t = time.perf_counter()
            props, _ = run("nmf-supervised", case, ex, device=device, seed=seed)
            est = nc.apply_masks(case, props)
            dt = time.perf_counter() - t
            s = nc.sdr(case, est)
            defaults = get_method("nmf-supervised").Params()
            t = time.perf_counter()
            est = sklearn_supervised(case, defaults.components, defaults.mask_power)
            dt2 = time.perf_counter() - t
            s2 = nc.sdr(case, est)
            rows["ours"].append(s)
            rows["sklearn"].append(s2)
            print(f"  nmf-supervised {fmt(s)} {dt:6.1f} s | scikit-learn {fmt(s2)} {dt2:6.1f} s "
                  f"| diff {np.mean(s - s2):+.2f} dB, speed x{dt2 / dt:.1f}", flush=True)
        if only & {"unsup", "semi", "paint", "hum"}:
            t = time.perf_counter()
            props, _ = run("nmf", case, Hints(), device=device, seed=seed)
            est = nc.apply_masks(case, props)
            dt = time.perf_counter() - t
            su = nc.sdr_permuted(case, est)
            rows["nmf"].append(su)
            print(f"  nmf            {fmt(su)} {dt:6.1f} s", flush=True)
        if "unsup" in only:
            if not rows["sk-unsup"]:
                # librosa compiles its kernels on first use: not the pipeline's time.
                sklearn_unsupervised(case, 2, 1.0, seed)
            defaults = get_method("nmf").Params()
            t = time.perf_counter()
            est = sklearn_unsupervised(case, defaults.components, defaults.mask_power, seed)
            dt2 = time.perf_counter() - t
            sk = nc.sdr_permuted(case, est)
            rows["sk-unsup"].append(sk)
            print(f"  scikit-learn + librosa NMF-MFCC {fmt(sk)} {dt2:6.1f} s | nmf − it "
                  f"{np.mean(su - sk):+.2f} dB, speed x{dt2 / dt:.1f}", flush=True)
        if only & {"semi", "paint", "hum"}:
            # The grouping nmf had until 2026-11-24 (k-means on the templates' MFCCs),
            # against which the paint's and the hum's gains were first measured.
            props, dt = run("nmf", case, Hints(), device=device, seed=seed, cluster_on="mfcc")
            sm = nc.sdr_permuted(case, nc.apply_masks(case, props))
            rows["nmf-mfcc"].append(sm)
            print(f"  nmf, mfcc      {fmt(sm)} {dt:6.1f} s", flush=True)
        def versus_nmf(row: str, label: str, name: str, hints: Hints, note: str = "",
                       **values) -> None:
            """Run ``name``, score it without permutation, print it against nmf."""
            props, dt = run(name, case, hints, device=device, seed=seed, **values)
            s = nc.sdr(case, nc.apply_masks(case, props))
            rows[row].append(s)
            print(f"  {label:14s} {fmt(s)} {dt:6.1f} s{note} | vs nmf {np.mean(s - su):+.2f} dB",
                  flush=True)

        first = case.names[0]
        if "semi" in only:
            versus_nmf("semi", "nmf-semisup.", "nmf-semisupervised",
                       Hints(examples={first: [AudioHint(case.examples[first], case.sr)]}))
        if "paint" in only:
            p0, c0 = nc.dominance_paint(case, 0, scales=scales)
            p1, c1 = nc.dominance_paint(case, 1, scales=scales)
            painted = Hints(paint={first: p0, "rest": p1})
            versus_nmf("paint", "nmf-paint", "nmf-paint", painted,
                       f" (painted {c0:.0%}, {c1:.0%} of the dominant bins)")
            # The constrained fit from random templates (init="random"), for comparison.
            versus_nmf("paint-rnd", "paint, random", "nmf-paint", painted, init="random")
            refine_once(case, painted, seed, device, su, rows)
        if "hum" in only:
            versus_nmf("hum", "nmf-hum", "nmf-hum",
                       Hints(hums={first: [AudioHint(case.examples[first], case.sr)]}))
            high = Hints(hums={first: [AudioHint(nc.played_faster(case.examples[first], 3),
                                                 case.sr)]})
            versus_nmf("hum+3st", "hum, +3 st", "nmf-hum", high)
            # The target's own passage 3 semitones high (sung along in another key),
            # as it is and darker (hummed along): the hint holds the mixture's notes.
            along = nc.played_faster(case.sources[0].astype(np.float32), 3)
            versus_nmf("hum-along", "hum along +3", "nmf-hum",
                       Hints(hums={first: [AudioHint(along, case.sr)]}))
            versus_nmf("hum-along-dark", "  darker", "nmf-hum",
                       Hints(hums={first: [AudioHint(nc.recoloured(along, case.sr, "dark"),
                                                     case.sr)]}))
            # The same two hints with the pitch search off (on by default, ±3: it
            # should move the high hint 3 semitones down and the other one little).
            versus_nmf("hum-nosearch", "hum, no search", "nmf-hum",
                       Hints(hums={first: [AudioHint(case.examples[first], case.sr)]}),
                       transpose_search=0)
            versus_nmf("hum+3st-nosearch", "  +3, no search", "nmf-hum", high,
                       transpose_search=0)
            # Another balance than the target's (a hum's, a phone's), as it is (the
            # default) and matched to the mixture's (equalize=true).
            for kind in ("dark", "thin"):
                coloured = Hints(hums={first: [AudioHint(
                    nc.recoloured(case.examples[first], case.sr, kind), case.sr)]})
                versus_nmf(f"hum-{kind}", f"hum, {kind}", "nmf-hum", coloured)
                versus_nmf(f"hum-{kind}-eq", "  matched", "nmf-hum", coloured, equalize=True)
    out: dict[str, float] = {}
    print("== medians over all sources (dB)")
    for k, v in rows.items():
        if v:
            out[f"median {k}"] = float(np.median(np.concatenate(v)))
            print(f"  {k:8s} {out[f'median {k}']:6.2f}")
    # The two readings of "beats X by d dB median": the difference of the two median
    # SDRs, and the median of the per-source differences (the stricter one here).
    pairs = [("ours", "sklearn", "nmf-supervised − scikit-learn"),
             ("nmf", "sk-unsup", "nmf − scikit-learn+librosa NMF-MFCC")]
    pairs += [(k, "nmf", f"{k} − nmf")
              for k in ("semi", "paint", "paint-rnd", "paint+fix", "hum", "hum+3st",
                        "hum-nosearch", "hum+3st-nosearch", "hum-dark", "hum-dark-eq",
                        "hum-thin", "hum-thin-eq", "hum-along", "hum-along-dark")]
    pairs += [(k, "nmf-mfcc", f"{k} − nmf (cluster_on=mfcc)") for k in ("paint", "hum", "hum+3st")]
    for a, b, label in pairs:
        if rows[a] and rows[b]:
            x, y = np.concatenate(rows[a]), np.concatenate(rows[b])
            out[f"{label}: diff. of medians"] = float(np.median(x) - np.median(y))
            out[f"{label}: median of diffs"] = float(np.median(x - y))
            print(f"  {label}: difference of medians {np.median(x) - np.median(y):+.2f} dB, "
                  f"median of per-source differences {np.median(x - y):+.2f} dB")
    return out


def refine_once(case, painted: Hints, seed: int, device: str, su: np.ndarray, rows) -> None:
    """``nmf-paint`` in a session, then one simulated round of corrections (``not:NAME``
    rectangles over what each layer holds of the other source, at most 20 per layer)
    and ``Session.rerun``: the refinement loop's gain."""
    from demixstudio.session import Session

    m = get_method("nmf-paint")
    s = Session(case.mix, case.sr)
    t = time.perf_counter()
    first = s.run_method("nmf-paint", make_params(m.Params, {"device": device, "seed": seed,
                                                             "precision": PRECISION}),
                         painted)
    masks = [x.mask for x in first]
    veto = [nc.correction_paint(case, masks, i) for i in range(2)]
    paint = dict(painted.paint)
    paint.update({f"not:{first[0].name}": veto[0][0], f"not:{first[1].name}": veto[1][0]})
    new = s.rerun(first[0], Hints(paint=paint))
    dt = time.perf_counter() - t
    v = nc.sdr(case, nc.apply_masks(case, [x.mask for x in new]))
    rows["paint+fix"].append(v)
    print(f"  {'paint + fixes':14s} {fmt(v)} {dt:6.1f} s (both runs; {len(veto[0][0].rects)} + "
          f"{len(veto[1][0].rects)} correction rectangles) | vs nmf {np.mean(v - su):+.2f} dB",
          flush=True)


def long_repair(minutes: float, device: str) -> None:
    """Peak RSS of ``repair`` on ``minutes`` of band-limited (400–1600 Hz) stereo."""
    from scipy.signal import butter, sosfilt

    from _timing import memory_mb

    sr = 44100
    speech = nc.load("speech_librispeech/5703-47212-0000.wav", sr).astype(np.float32)
    example = speech[: 5 * sr][None]
    n = int(minutes * 60 * sr)
    sos = butter(10, [400, 1600], btype="band", fs=sr, output="sos")
    # Tiled and filtered a stretch at a time (the filter's state carried over), so
    # that the set-up's own peak stays under the repair's and the peak read after
    # it is the repair's.
    mix = np.empty((2, n), dtype=np.float32)
    piece = speech[5 * sr:]
    zi = np.zeros((sos.shape[0], 2))
    for a in range(0, n, piece.size):
        y, zi = sosfilt(sos, piece[:n - a], zi=zi)
        mix[0, a:a + y.size] = y
        mix[1, a:a + y.size] = 0.7 * y
    m = get_method("repair")
    p = make_params(m.Params, {"device": device, "band_lo_hz": 400.0, "band_hi_hz": 1600.0})
    now, base = memory_mb()
    t = time.perf_counter()
    out = m.separate(mix, sr, p, Hints(examples={"x": [AudioHint(example, sr)]}), NullContext())
    dt = time.perf_counter() - t
    peak = memory_mb()[1]
    mb = mix.nbytes / 2**20
    print(f"repair, {minutes:g} min stereo at 44.1 kHz: {dt:.1f} s, peak RSS {peak:.0f} MB, "
          f"{peak - now:.0f} MB above the RSS at the call ({now:.0f} MB; peak before it "
          f"{base:.0f} MB; input {mb:.0f} MB, output {out[0].waveform.nbytes / 2**20:.0f} MB)")


def cut_gap(x: np.ndarray, sr: int, cfg: StftConfig) -> tuple[np.ndarray, np.ndarray]:
    """``x`` float32 (channels, n) with a 1.6–5 kHz × 0.6 s gap from 0.64 s (its STFT
    bins zeroed; set in Hz and seconds, so at 16 kHz bins 100–300 of frames 40–80),
    and the gap's bool (bins, frames) mask."""
    df, dt_frame = sr / cfg.n_fft, cfg.hop / sr
    f0, f1 = round(1562.5 / df), round(4687.5 / df)
    t0, t1 = round(0.64 / dt_frame), round(1.28 / dt_frame)
    X = stft(x, cfg)
    X[:, f0:f1, t0:t1] = 0
    mask = np.zeros(X.shape[1:], bool)
    mask[f0:f1, t0:t1] = True
    return istft(X, x.shape[1], cfg), mask


def outside_band(lo: float, hi: float, sr: int, cfg: StftConfig, frames: int) -> np.ndarray:
    """bool (bins, frames): the bins under ``lo`` or over ``hi`` Hz."""
    freqs = cfg.bin_freqs(sr)
    return np.repeat(((freqs < lo) | (freqs > hi))[:, None], frames, axis=1)


def repair_cases(device: str, sr: int = nc.SR) -> None:
    """The repair figures at ``sr`` (``--sr``; the gap: :func:`cut_gap`)."""
    from scipy.signal import butter, sosfiltfilt

    cfg = StftConfig.for_rate(sr)
    m = get_method("repair")
    print(f"== repair: log-spectral distance to the original (dB), {sr} Hz")
    for rel, exr, ter in [("speech_librispeech/5703-47212-0000.wav", (0, 5), (5, 10)),
                          ("solo_instruments/cello-phrase.wav", (0, 4.2), (4.2, 8.4))]:
        x = nc.excerpt(rel, ter, sr).astype(np.float32)[None]
        e = nc.excerpt(rel, exr, sr).astype(np.float32)[None]
        hints = Hints(examples={"x": [AudioHint(e, sr)]})
        bl = sosfiltfilt(butter(10, [400, 1600], btype="band", fs=sr, output="sos"), x)
        bl = bl.astype(np.float32)
        gap, in_gap = cut_gap(x, sr, cfg)
        out_band = outside_band(400.0, 1600.0, sr, cfg, in_gap.shape[1])
        rank = m.Params().components
        for label, damaged, values, missing in [
                ("band 400-1600 Hz, band given", bl, {"band_lo_hz": 400.0, "band_hi_hz": 1600.0},
                 out_band),
                ("band 400-1600 Hz, band found", bl, {}, None),
                ("gap 1.6-5 kHz x 0.6 s", gap, {}, in_gap)]:
            a = log_spectral_distance(x, damaged, cfg)
            for phase in ((None, 0) if missing is not None else (None,)):
                extra = {} if phase is None else {"phase_iter": phase}
                t = time.perf_counter()
                p = make_params(m.Params, {"device": device, "precision": PRECISION, **values,
                                           **extra})
                out = m.separate(damaged, sr, p, hints, NullContext())[0].waveform
                dt = time.perf_counter() - t
                b = log_spectral_distance(x, out, cfg)
                tag = label if phase is None else "  the same, no Griffin-Lim"
                print(f"  {Path(rel).stem:18s} {tag:30s} LSD {a:6.2f} -> {b:6.2f} "
                      f"({(1 - b / a):+.0%})  {dt:.1f} s", flush=True)
            if missing is in_gap:
                # Told the bins as the peer is: the gap painted (a spectral repair's
                # selection), where the floor finds only its inside.
                told = Hints(examples=hints.examples, paint={"gap": PaintHint(
                    mask=in_gap.astype(np.float32), times=cfg.frame_times(x.shape[1], sr),
                    freqs=cfg.bin_freqs(sr))})
                t = time.perf_counter()
                p = make_params(m.Params, {"device": device, "precision": PRECISION})
                out = m.separate(damaged, sr, p, told, NullContext())[0].waveform
                dt3 = time.perf_counter() - t
                b = log_spectral_distance(x, out, cfg)
                print(f"  {'':18s} {'  told the bins (painted)':30s} LSD {a:6.2f} -> {b:6.2f} "
                      f"({(1 - b / a):+.0%})  {dt3:.1f} s", flush=True)
            if missing is not None:
                # The peer is told which bins are missing and keeps the input's phase
                # (as ``repair`` with phase_iter=0 above).
                t = time.perf_counter()
                out = sklearn_repair(damaged, e, missing, sr, rank)
                dt2 = time.perf_counter() - t
                c = log_spectral_distance(x, out, cfg)
                print(f"  {'':18s} {'  scikit-learn, told the bins':30s} LSD {a:6.2f} -> "
                      f"{c:6.2f} ({(1 - c / a):+.0%})  {dt2:.1f} s | speed x{dt2 / dt:.1f} "
                      f"against the run above", flush=True)


if __name__ == "__main__":
    main()
