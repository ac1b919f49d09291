"""A demo mixture synthesised entirely in code, so the program has something
real to open with no input file.

Four instruments play a four-bar loop in A minor (Am - F - C - G, one chord per
bar) at 100 bpm:

- **bass**: a band-limited sawtooth through a low-pass whose brightness decays
  after each note onset (a subtractive-synth pluck), eighth-note pattern.
- **drums**: kick (pitch-swept sine plus a noise click), snare (band-passed
  noise plus a tone), closed and open hi-hats (high-passed noise) on a
  sixteenth-note grid. Built in stereo: the hats sit a little further left
  than kick and snare.
- **chords**: an additive pad (harmonic partials, two slightly detuned copies
  for a slow chorus beat) with a slow attack and release.
- **lead**: an FM voice (carrier:modulator 1:1, decaying index) with delayed
  vibrato playing a composed melody over the progression.

Every stem is panned with the constant-power law ``theta = (pan + 1) * pi / 4``,
``left = cos(theta)``, ``right = sin(theta)`` at the positions in
:data:`DEMO_PANS`, so the stems are spatially distinct and spatial methods
have something to find. Randomness (drawn from ``seed``) is only used for
noise sources and small timing/velocity humanisation, so a given seed always
gives the same samples.

Synthesis is vectorised per note (there are a few dozen notes per 12 s); no
Python loop runs per sample.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import signal

from demixstudio.errors import ParameterError

__all__ = ["DEMO_SR", "DEMO_BPM", "DEMO_PANS", "DEMO_PEAK_DBFS", "demo_mixture"]

#: Default sample rate of the demo mixture, Hz.
DEMO_SR = 44100
#: Tempo of the demo, beats per minute (4/4 time).
DEMO_BPM = 100.0
#: Pan position of each stem, -1 (hard left) ... +1 (hard right). The drums'
#: kick and snare sit here; their hats sit a little further left.
DEMO_PANS = {"bass": 0.0, "drums": -0.3, "chords": 0.6, "lead": -0.7}
#: Peak level of the finished mix, dBFS (headroom, and never clipping).
DEMO_PEAK_DBFS = -3.0

_HAT_PAN = -0.5
_MIN_SR = 8000
_MAX_SR = 192000

# Chord progression, one chord per bar: (root MIDI note for the bass, pad voicing).
# Voicings are chosen for smooth voice leading around middle C.
_PROGRESSION = [
    (33, (57, 60, 64)),  # Am: A1 | A3 C4 E4
    (29, (57, 60, 65)),  # F:  F1 | A3 C4 F4
    (36, (55, 60, 64)),  # C:  C2 | G3 C4 E4
    (31, (55, 59, 62)),  # G:  G1 | G3 B3 D4
]
# Bass line per bar in eighth notes: semitone offset from the chord root
# (root, octave, fifth), giving a driving but harmonically plain part.
_BASS_PATTERN = [0, 0, 12, 0, 7, 0, 12, 7]
# Lead melody over the 4-bar loop: (start in eighths, length in eighths, MIDI).
_MELODY = [
    (0, 2, 76), (2, 1, 72), (3, 1, 74), (4, 2, 76), (6, 2, 81),   # Am
    (8, 3, 77), (11, 1, 76), (12, 2, 72), (14, 2, 69),            # F
    (16, 2, 67), (18, 1, 72), (19, 1, 76), (20, 3, 79), (23, 1, 76),  # C
    (24, 2, 74), (26, 2, 71), (28, 4, 74),                        # G
]
# Drums per bar on a sixteenth grid. The extra kick on the "and" of 3 is played
# in odd bars only, for a little variation across the loop.
_KICK_STEPS = (0, 8)
_KICK_EXTRA_STEP = 10
_SNARE_STEPS = (4, 12)
_OPEN_HAT_STEP = 14  # in odd bars, replacing the closed hat there


def _midi_hz(note: float) -> float:
    """Frequency in Hz of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _pan_gains(pan: float) -> tuple[float, float]:
    """(left, right) gains of the constant-power pan law, ``cos``/``sin`` of theta."""
    theta = (pan + 1.0) * math.pi / 4.0
    return math.cos(theta), math.sin(theta)


def _place(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    """Add ``sound`` (samples,) into ``out`` (samples,) at ``start``, cut at the end."""
    start = max(0, int(start))
    if start >= out.shape[-1]:
        return
    n = min(sound.shape[-1], out.shape[-1] - start)
    out[start:start + n] += sound[:n]


def _envelope(n: int, sr: int, gate: float, attack: float, decay: float,
              sustain: float, release: float) -> np.ndarray:
    """An ADSR amplitude envelope, shape (n,), for a note held ``gate`` seconds.

    Attack is linear, decay and release are exponential (they sound natural
    and never jump). The release starts from wherever the envelope is at the
    end of the gate, so short notes do not click.
    """
    t = np.arange(n) / sr
    attack = max(attack, 1.0 / sr)
    held = np.where(
        t < attack,
        t / attack,
        sustain + (1.0 - sustain) * np.exp(-(t - attack) / max(decay, 1e-6)),
    )
    # Level reached at the end of the gate, the start of the release.
    if gate < attack:
        level = gate / attack
    else:
        level = sustain + (1.0 - sustain) * math.exp(-(gate - attack) / max(decay, 1e-6))
    released = level * np.exp(-(t - gate) / max(release, 1e-6))
    env = np.where(t < gate, held, released)
    # The note buffer ends before the release has fully died away; a 10 ms
    # fade to zero at its very end keeps that cut from clicking.
    fade = min(n, max(1, int(0.01 * sr)))
    env[n - fade:] *= np.linspace(1.0, 0.0, fade)
    return env


def _blep_saw(freq: float, n: int, sr: int) -> np.ndarray:
    """A band-limited sawtooth in [-1, 1], shape (n,), via PolyBLEP.

    A naive sawtooth aliases audibly at low sample rates; PolyBLEP smooths the
    reset step with a two-sample polynomial, which is cheap and vectorises.
    """
    dt = freq / sr
    ph = (np.arange(n) * dt) % 1.0
    saw = 2.0 * ph - 1.0
    # Residual just after the reset ...
    a = ph / dt
    saw -= np.where(ph < dt, 2.0 * a - a * a - 1.0, 0.0)
    # ... and just before it.
    b = (ph - 1.0) / dt
    saw -= np.where(ph > 1.0 - dt, b * b + 2.0 * b + 1.0, 0.0)
    return saw


def _lowpass(cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth low-pass SOS with the cutoff kept safely below Nyquist."""
    return signal.butter(order, min(cutoff, 0.45 * sr), btype="lowpass", fs=sr, output="sos")


def _highpass(cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth high-pass SOS with the cutoff kept safely below Nyquist."""
    return signal.butter(order, min(cutoff, 0.4 * sr), btype="highpass", fs=sr, output="sos")


def _bandpass(low: float, high: float, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth band-pass SOS with both edges kept below Nyquist."""
    high = min(high, 0.45 * sr)
    low = min(low, 0.5 * high)
    return signal.butter(order, [low, high], btype="bandpass", fs=sr, output="sos")


class _Grid:
    """Musical time to samples, with seeded humanisation."""

    def __init__(self, sr: int, rng: np.random.Generator):
        self.sr = sr
        self.rng = rng
        self.beat = 60.0 / DEMO_BPM
        self.bar = 4.0 * self.beat
        self.eighth = self.beat / 2.0
        self.sixteenth = self.beat / 4.0

    def start(self, seconds: float, jitter: float) -> int:
        """Sample index of an onset at ``seconds``, nudged by up to ``jitter`` s.

        Small random timing offsets make the parts sound played, not quantised.
        """
        t = seconds + self.rng.uniform(-jitter, jitter)
        return max(0, int(round(t * self.sr)))

    def velocity(self, base: float, spread: float) -> float:
        """``base`` scaled by a random factor in [1 - spread, 1 + spread]."""
        return base * (1.0 + self.rng.uniform(-spread, spread))


def _bass(n: int, g: _Grid) -> np.ndarray:
    """The bass line, mono, shape (n,)."""
    sr = g.sr
    out = np.zeros(n)
    # Two fixed low-passes of the same saw; cross-fading from the bright one to
    # the dark one after each onset imitates a filter envelope without a
    # time-varying filter (which would need a per-sample loop).
    dark = _lowpass(350.0, sr)
    bright = _lowpass(2200.0, sr)
    n_bars = int(math.ceil(n / (g.bar * sr)))
    gate = 0.85 * g.eighth
    length = int((gate + 0.08) * sr)
    t = np.arange(length) / sr
    fenv = np.exp(-t / 0.07)
    env = _envelope(length, sr, gate, 0.004, 0.15, 0.55, 0.03)
    # Every note of a pitch sounds the same up to velocity (no noise source),
    # so each pitch is rendered once; the line uses only a handful of pitches.
    tones: dict[int, np.ndarray] = {}
    for bar in range(n_bars):
        root = _PROGRESSION[bar % len(_PROGRESSION)][0]
        for step, offset in enumerate(_BASS_PATTERN):
            t0 = bar * g.bar + step * g.eighth
            start = g.start(t0, 0.004)
            if start >= n:
                break
            note = root + offset
            if note not in tones:
                saw = _blep_saw(_midi_hz(note), length, sr)
                tones[note] = env * (signal.sosfilt(dark, saw) * (1.0 - fenv)
                                     + signal.sosfilt(bright, saw) * fenv)
            # Accent the downbeat of each beat, as a bassist would.
            vel = g.velocity(1.0 if step % 2 == 0 else 0.75, 0.08)
            _place(out, start, vel * tones[note])
    return out


def _kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    """One kick drum hit, mono: a sine swept 160 -> 48 Hz plus a noise click."""
    n = int(0.45 * sr)
    t = np.arange(n) / sr
    f_hi, f_lo, tau = 160.0, 48.0, 0.035
    # Closed-form phase of f(t) = f_lo + (f_hi - f_lo) exp(-t / tau).
    phase = 2.0 * np.pi * (f_lo * t + (f_hi - f_lo) * tau * (1.0 - np.exp(-t / tau)))
    body = np.sin(phase) * np.exp(-t / 0.22)
    # The click has died away (-60 dB) within ~20 ms; filter only that much noise.
    m = min(n, int(0.02 * sr))
    click = signal.sosfilt(_highpass(1500.0, sr), rng.standard_normal(m)) * np.exp(-t[:m] / 0.003)
    body[:m] += 0.35 * click
    return body


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    """One snare hit, mono: band-passed noise (the wires) plus a two-mode tone (the head)."""
    n = int(0.3 * sr)
    t = np.arange(n) / sr
    noise = signal.sosfilt(_bandpass(1200.0, 7000.0, sr), rng.standard_normal(n))
    wires = noise * np.exp(-t / 0.07)
    head = (np.sin(2 * np.pi * 185.0 * t) + 0.5 * np.sin(2 * np.pi * 330.0 * t)) * np.exp(-t / 0.05)
    return 0.9 * wires + 0.55 * head


def _hat(sr: int, rng: np.random.Generator, open_: bool) -> np.ndarray:
    """One hi-hat hit, mono: high-passed noise; ``open_`` rings longer."""
    decay = 0.16 if open_ else 0.03
    n = int(5 * decay * sr)
    t = np.arange(n) / sr
    noise = signal.sosfilt(_highpass(7000.0, sr, order=4), rng.standard_normal(n))
    return noise * np.exp(-t / decay)


def _drums(n: int, g: _Grid) -> np.ndarray:
    """The drum kit, stereo, shape (2, n): kick and snare at the drums' pan, hats further left."""
    sr, rng = g.sr, g.rng
    kit = np.zeros(n)
    hats = np.zeros(n)
    # A few pre-rendered variants per drum, picked at random per hit ("round
    # robin", as drum samplers do): hits differ like real ones, and rendering
    # stays cheap however long the mixture is.
    kick = [_kick(sr, rng) for _ in range(3)]
    snare = [_snare(sr, rng) for _ in range(4)]
    closed = [_hat(sr, rng, False) for _ in range(4)]
    opened = [_hat(sr, rng, True) for _ in range(2)]

    def pick(bank: list) -> np.ndarray:
        return bank[int(rng.integers(len(bank)))]

    n_bars = int(math.ceil(n / (g.bar * sr)))
    for bar in range(n_bars):
        t_bar = bar * g.bar
        kicks = _KICK_STEPS + ((_KICK_EXTRA_STEP,) if bar % 2 == 1 else ())
        for step in kicks:
            _place(kit, g.start(t_bar + step * g.sixteenth, 0.002), g.velocity(1.0, 0.05) * pick(kick))
        for step in _SNARE_STEPS:
            _place(kit, g.start(t_bar + step * g.sixteenth, 0.004), g.velocity(0.8, 0.08) * pick(snare))
        for step in range(0, 16, 2):
            open_ = bar % 2 == 1 and step == _OPEN_HAT_STEP
            # Hats on the beat louder than the off-beats: the usual eighth-note lilt.
            base = 0.32 if step % 4 == 0 else 0.22
            hit = pick(opened if open_ else closed)
            _place(hats, g.start(t_bar + step * g.sixteenth, 0.006), g.velocity(base, 0.15) * hit)
    kl, kr = _pan_gains(DEMO_PANS["drums"])
    hl, hr = _pan_gains(_HAT_PAN)
    return np.stack([kl * kit + hl * hats, kr * kit + hr * hats])


def _chords(n: int, g: _Grid) -> np.ndarray:
    """The pad, mono, shape (n,): additive partials, one chord per bar."""
    sr, rng = g.sr, g.rng
    out = np.zeros(n)
    n_bars = int(math.ceil(n / (g.bar * sr)))
    gate = g.bar
    release = 0.45
    length = int((gate + 3 * release) * sr)
    env = _envelope(length, sr, gate, 0.35, 1.0, 0.8, release)
    # Partial k has amplitude k^-1.6, a soft, slightly reedy spectrum; two
    # copies detuned +-4 cents beat slowly (chorus). Each voice is read from a
    # one-period wavetable of its partials: the same sound as summing sines, but
    # one table look-up per sample instead of one sine per partial. The table is
    # large enough that nearest-entry look-up errs by < -65 dB, so no
    # interpolation is needed; its size is a power of two so the phase wraps
    # with an integer mask instead of a (much slower) float modulo.
    table_size = 8192
    cycle = np.arange(table_size) / table_size
    samples = np.arange(length, dtype=np.float64)
    k = np.arange(1, 9)
    amps = k ** -1.6
    for bar in range(n_bars):
        start = g.start(bar * g.bar, 0.003)
        if start >= n:
            break
        voicing = _PROGRESSION[bar % len(_PROGRESSION)][1]
        # Synthesise only what fits before the end of the mixture.
        m = min(length, n - start)
        chord = np.zeros(m)
        for note in voicing:
            f0 = _midi_hz(note)
            for cents in (-4.0, 4.0):
                f = f0 * 2.0 ** (cents / 1200.0)
                # Only partials below Nyquist (with margin), so nothing aliases.
                keep = k[k * f < 0.45 * sr]
                phases = rng.uniform(0, 2 * np.pi, size=(keep.size, 1))
                table = amps[keep - 1] @ np.sin(2 * np.pi * keep[:, None] * cycle + phases)
                idx = (samples[:m] * (f * table_size / sr) + 0.5).astype(np.intp)
                idx &= table_size - 1
                chord += table[idx]
        _place(out, start, g.velocity(1.0, 0.04) * env[:m] * chord)
    return out


def _lead(n: int, g: _Grid) -> np.ndarray:
    """The lead melody, mono, shape (n,): an FM voice with delayed vibrato."""
    sr = g.sr
    out = np.zeros(n)
    loop = len(_PROGRESSION) * g.bar
    n_loops = int(math.ceil(n / (loop * sr)))
    for rep in range(n_loops):
        for step, steps, note in _MELODY:
            t0 = rep * loop + step * g.eighth
            start = g.start(t0, 0.006)
            if start >= n:
                continue
            gate = steps * g.eighth * 0.92
            length = int((gate + 0.25) * sr)
            t = np.arange(length) / sr
            f0 = _midi_hz(note)
            # Vibrato fades in after the attack, as a singer or violinist would.
            depth = 0.006 * (1.0 - np.exp(-t / 0.25))
            inst_f = f0 * (1.0 + depth * np.sin(2 * np.pi * 5.5 * t))
            phase = 2 * np.pi * np.cumsum(inst_f) / sr
            # A 1:1 modulator gives all harmonics (brass/string-like); its index
            # decays so each note starts bright and mellows.
            index = 0.5 + 1.5 * np.exp(-t / 0.08)
            voice = np.sin(phase + index * np.sin(phase))
            env = _envelope(length, sr, gate, 0.008, 0.3, 0.6, 0.05)
            _place(out, start, g.velocity(1.0, 0.1) * env * voice)
    return out


def _rms(x: np.ndarray) -> float:
    """Root-mean-square of all samples of ``x``."""
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _validate(sr, seconds, seed) -> tuple[int, float, int]:
    """Check the arguments of :func:`demo_mixture`; return them normalised."""
    if isinstance(sr, bool) or not isinstance(sr, numbers.Real) or float(sr) != int(sr):
        raise ParameterError(f"sr={sr!r} is not an integer sample rate; give an int in [{_MIN_SR}, {_MAX_SR}]")
    sr = int(sr)
    if not _MIN_SR <= sr <= _MAX_SR:
        raise ParameterError(f"sr={sr} is out of range; give a sample rate in [{_MIN_SR}, {_MAX_SR}] Hz")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise ParameterError(f"seconds={seconds!r} is not a number; give a duration > 0")
    seconds = float(seconds)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ParameterError(f"seconds={seconds!r} is not a finite duration > 0")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ParameterError(f"seed={seed!r} is not a non-negative integer")
    return sr, seconds, int(seed)


def demo_mixture(sr: int = DEMO_SR, seconds: float = 12.0, seed: int = 0
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Synthesise the demo song and return its stereo mix and its four stems.

    Parameters
    ----------
    sr : int, optional
        Sample rate in Hz, 8000 <= sr <= 192000. Default :data:`DEMO_SR`.
    seconds : float, optional
        Duration in seconds, > 0. The four-bar loop (9.6 s) repeats as needed
        and is cut at the end. Default 12.0.
    seed : int, optional
        Seed (>= 0) for the noise sources and the humanisation of timing and
        velocity. The same arguments always give the same samples.

    Returns
    -------
    mix : np.ndarray
        float32, shape (2, samples) with ``samples = round(seconds * sr)``
        (at least 1). Exactly the float32 sum of the stems, in the order
        returned; peaks at about -3 dBFS.
    stems : dict of str to np.ndarray
        ``{"bass", "drums", "chords", "lead"}`` in that order, each float32,
        shape (2, samples), panned as in :data:`DEMO_PANS`.

    Raises
    ------
    ParameterError
        If ``sr``, ``seconds`` or ``seed`` is out of range or of the wrong type.
    """
    sr, seconds, seed = _validate(sr, seconds, seed)
    n = max(1, int(round(seconds * sr)))
    rng = np.random.default_rng(seed)
    grid = _Grid(sr, rng)

    mono = {"bass": _bass(n, grid), "chords": _chords(n, grid), "lead": _lead(n, grid)}
    stereo = {name: np.stack([gl * x, gr * x])
              for name, x in mono.items()
              for gl, gr in [_pan_gains(DEMO_PANS[name])]}
    stereo["drums"] = _drums(n, grid)

    # Balance the parts by loudness relative to each other (dB), independent of
    # how each synth happens to be scaled; then one common gain sets the mix peak.
    balance_db = {"bass": -1.0, "drums": 0.0, "chords": -5.0, "lead": -2.5}
    order = ["bass", "drums", "chords", "lead"]
    for name in order:
        r = _rms(stereo[name])
        if r > 0:
            stereo[name] *= 10.0 ** (balance_db[name] / 20.0) / r
    peak = float(np.max(np.abs(sum(stereo[name] for name in order))))
    gain = 10.0 ** (DEMO_PEAK_DBFS / 20.0) / peak if peak > 0 else 1.0

    stems = {name: (gain * stereo[name]).astype(np.float32) for name in order}
    # The mix is the float32 sum in stem order, so sum(stems.values()) == mix exactly.
    mix = np.zeros((2, n), dtype=np.float32)
    for name in order:
        mix += stems[name]
    return mix, stems
