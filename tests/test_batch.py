"""Batch separation: inputs, the manifest, and real runs on local Dask clusters.

The cluster tests write short excerpts of real recordings (``../shared/audio``)
into ``tmp_path``, plus one corrupt file, and run ``hpss`` on them: through
``scheduler=`` on a ``LocalCluster`` of two worker processes on loopback that
the tests share (as a remote cluster would be used), and through the command
line, which starts its own local cluster.
"""

from __future__ import annotations

import functools

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, shared

from demixstudio.batch import collect_inputs, run_batch
from demixstudio.batch import manifest as mf
from demixstudio.batch.runner import check_scheduler_address, local_cluster
from demixstudio.batch.task import STAGING_TAG
from demixstudio.cli import main
from demixstudio.errors import Cancelled, DemixError, ParameterError
from demixstudio.separation import get_method, make_params

SOURCES = [
    "speech_sisec_dev1/dev1_female4_src_1.wav", "speech_sisec_dev1/dev1_male4_src_2.wav",
    "speech_librispeech/198-209-0000.wav", "environment/doing_the_dishes.wav",
    "speech_sisec_dev1/dev1_female4_src_3.wav", "environment/church_bells.wav",
]


def _write_inputs(folder: Path, seconds: float = 3.0):
    """Six 16 kHz excerpts in ``folder`` and ``folder/sub``, plus ``folder/broken.wav``."""
    (folder / "sub").mkdir(parents=True)
    good = {}
    for i, rel in enumerate(SOURCES):
        x, sr = sf.read(str(shared(rel)), dtype="float32", always_2d=True)
        assert sr == 16000
        x = x[:int(seconds * sr)]
        name = f"sub/clip{i}.flac" if i % 2 else f"clip{i}.wav"
        sf.write(folder / name, x, sr, subtype="PCM_24")
        # What the file holds (quantised), which the layers must add back to.
        good[name.rsplit(".", 1)[0]] = sf.read(folder / name, dtype="float32", always_2d=True)[0].T
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    (folder / ".hidden.wav").write_bytes(b"not audio either")  # hidden: never picked up
    return good


@pytest.fixture(scope="module")
def scheduler():
    """Address of a LocalCluster with 2 single-threaded worker processes on loopback."""
    with local_cluster(2) as cluster:
        assert len(cluster.workers) == 2 and cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        yield cluster.scheduler_address


def _staging_left(out: Path):
    return [p for p in out.rglob("*") if STAGING_TAG in p.name or ".old-" in p.name
            or p.name.endswith(".part")]


# --------------------------------------------------------------------------
# inputs and manifest (no cluster)
# --------------------------------------------------------------------------


def test_collect_inputs_from_folders_files_and_lists(tmp_path):
    d = tmp_path / "in"
    (d / "a" / "b").mkdir(parents=True)
    (d / ".cache").mkdir()
    for rel in ("x.wav", "a/y.FLAC", "a/b/z.ogg", "a/notes.md", ".cache/h.wav"):
        (d / rel).write_bytes(b"")
    (d / "out").mkdir()
    (d / "out" / "old.wav").write_bytes(b"")
    got = collect_inputs([d], exclude=d / "out")
    assert [f.rel.as_posix() for f in got] == ["x", "a/y", "a/b/z"]
    # A list file: relative entries from its folder, comments and blanks skipped,
    # files named twice kept once.
    lst = tmp_path / "files.txt"
    lst.write_text("# my catalogue\n\nin/x.wav\n" + str(d / "a") + "\n", encoding="utf-8")
    got = collect_inputs([lst, d / "x.wav"])
    assert [(f.path.name, f.rel.as_posix()) for f in got] == [
        ("x.wav", "x"), ("y.FLAC", "y"), ("z.ogg", "b/z")]
    with pytest.raises(ParameterError, match="no such file"):
        collect_inputs([tmp_path / "missing"])
    (tmp_path / "x.flac").write_bytes(b"")
    with pytest.raises(ParameterError, match="both be written"):
        collect_inputs([d / "x.wav", tmp_path / "x.flac"])
    nested = tmp_path / "nested.lst"
    nested.write_text(str(lst), encoding="utf-8")
    with pytest.raises(ParameterError, match="not other lists"):
        collect_inputs([nested])


def test_manifest_decides_done_robustly(tmp_path):
    src = tmp_path / "song.wav"
    src.write_bytes(b"x" * 100)
    out = tmp_path / "out"
    (out / "song").mkdir(parents=True)
    (out / "song" / "a.flac").write_bytes(b"1")
    (out / "song" / "layers.json").write_text(json.dumps({"layers": [{"name": "a", "file": "a.flac"}]}))
    stamp = mf.input_stamp(src)
    rec = {"output": "song", "status": "ok", "signature": "s1",
           "input_size": stamp["size"], "input_mtime_ns": stamp["mtime_ns"]}
    man = out / mf.MANIFEST_NAME
    mf.append(man, [rec])
    with open(man, "a", encoding="utf-8") as fh:
        fh.write('{"output": "song", "status": "ok", "sig')  # a line torn by a crash
    last = mf.latest(mf.read(man))
    assert mf.is_done(last["song"], out, "s1", stamp)
    assert not mf.is_done(last["song"], out, "other-params", stamp)
    assert not mf.is_done(None, out, "s1", stamp)
    # A skip line does not hide the attempt before it; an error after an ok does.
    mf.append(man, [{"output": "song", "status": "skipped"}])
    assert mf.latest(mf.read(man))["song"]["status"] == "ok"
    os.utime(src, ns=(stamp["mtime_ns"] + 10 ** 9, stamp["mtime_ns"] + 10 ** 9))
    assert not mf.is_done(last["song"], out, "s1", mf.input_stamp(src))
    (out / "song" / "a.flac").unlink()
    assert not mf.is_done(last["song"], out, "s1", stamp)
    mf.append(man, [{"output": "song", "status": "error", "error": "boom"}])
    assert mf.latest(mf.read(man))["song"]["status"] == "error"


def test_bad_options_fail_before_any_work(tmp_path):
    _write = tmp_path / "a.wav"
    sf.write(_write, np.zeros(1600, np.float32), 16000)
    with pytest.raises(ParameterError, match="memory limit"):
        run_batch([_write], "hpss", tmp_path / "o", memory_limit="lots")
    with pytest.raises(ParameterError, match="workers"):
        run_batch([_write], "hpss", tmp_path / "o", workers=0)
    with pytest.raises(ParameterError, match="unknown method"):
        run_batch([_write], "nope", tmp_path / "o")
    with pytest.raises(ParameterError, match="no audio files"):
        (tmp_path / "empty").mkdir()
        run_batch([tmp_path / "empty"], "hpss", tmp_path / "o")
    with pytest.raises(ParameterError, match="FLAC"):
        run_batch([_write], "hpss", tmp_path / "o", ext="flac", bits="float")
    with pytest.raises(ParameterError, match="scheduler address"):
        run_batch([_write], "hpss", tmp_path / "o", scheduler="notanaddress")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("address", [
    "notanaddress", "tcp://notanaddress", "host:abc", "tcp://:8786", "host:0", "host:99999",
    "foo://host:8786", "tcp://", "", "  ", "[::1", "tcp://ho st:8786",
    "tcp://" + "a" * 70 + ".example:8786",  # a DNS label over 63 characters
])
def test_malformed_scheduler_addresses_are_refused_at_once(address):
    with pytest.raises(ParameterError, match="scheduler address"):
        check_scheduler_address(address)


@pytest.mark.parametrize("address,canonical", [
    ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ("10.0.0.5:8786", "tcp://10.0.0.5:8786"),  # Dask's default scheme
    ("localhost:8786", "tcp://localhost:8786"),
    (" tcp://sched.example.org:8786 ", "tcp://sched.example.org:8786"),
    ("tls://sched:8786", "tls://sched:8786"),
    ("tcp://[::1]:8786", "tcp://[::1]:8786"),
    ("ws://sched:8786", "ws://sched:8786"),
    ("wss://sched.example.org", "wss://sched.example.org"),
    ("inproc://10.0.0.5/123/1", "inproc://10.0.0.5/123/1"),
])
def test_the_address_forms_dask_accepts_pass(address, canonical):
    assert check_scheduler_address(address) == canonical


def test_bad_scheduler_on_the_command_line_is_one_line(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.random.default_rng(1).standard_normal(1600), 16000)
    t0 = time.monotonic()
    code = main(["batch", str(wav), "--method", "hpss", "--scheduler", "notanaddress",
                 "--out", str(tmp_path / "o" / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "scheduler address 'notanaddress'" in err[0] and "internal error" not in err[0]
    assert time.monotonic() - t0 < 10  # was a 44 s hang
    assert not (tmp_path / "o").exists()


def test_a_client_that_fails_oddly_is_closed_without_a_traceback():
    """Should Dask raise something other than OSError while connecting, the
    half-made client is closed at once: no 40 s hang and no traceback from its
    ``__del__`` (seen with a malformed address before addresses were checked)."""
    code = (
        "import gc, time\n"
        "from demixstudio.batch import runner\n"
        "from demixstudio.errors import DemixError\n"
        "runner.check_scheduler_address = lambda a: a  # let the malformed one through\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    runner._connect('notanaddress')\n"
        "except DemixError as exc:\n"
        "    print('refused:', exc)\n"
        "gc.collect()\n"
        "print('seconds', time.monotonic() - t)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "refused: cannot connect to the Dask scheduler at notanaddress" in r.stdout
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert float(r.stdout.split("seconds")[1]) < 10


def test_an_unreachable_scheduler_leaves_no_empty_folder(tmp_path, monkeypatch):
    import distributed

    def unreachable(*args, **kwargs):
        raise OSError("Timed out trying to connect")

    monkeypatch.setattr(distributed, "Client", unreachable)
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.random.default_rng(1).standard_normal(1600), 16000)
    with pytest.raises(DemixError, match="cannot reach the Dask scheduler"):
        run_batch([wav], "hpss", tmp_path / "o" / "b", scheduler="tcp://10.0.0.5:8786")
    assert not (tmp_path / "o").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(DemixError, match="cannot reach the Dask scheduler"):
        run_batch([wav], "hpss", kept, scheduler="tcp://10.0.0.5:8786")
    assert kept.is_dir()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_gpu_is_refused_before_local_workers_start(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.random.default_rng(1).standard_normal(1600), 16000)
    params = make_params(get_method("nmf").Params, strings={"device": "cuda"})
    with pytest.raises(ParameterError, match="CUDA"):
        run_batch([wav], "nmf", tmp_path / "o", params=params)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------
# real runs on a local cluster
# --------------------------------------------------------------------------


def test_local_cluster_two_workers_resume_and_a_corrupt_file(tmp_path, scheduler):
    good = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    seen = []
    s1 = run_batch([tmp_path / "in"], "hpss", out, scheduler=scheduler, on_record=seen.append)
    assert (s1.total, s1.ok, s1.failed, s1.skipped) == (7, 6, 1, 0)
    assert len(seen) == 7
    for rel, x in good.items():
        folder = out / rel
        assert sorted(p.name for p in folder.iterdir()) == [
            "harmonic.flac", "layers.json", "percussive.flac"]
        h, _ = sf.read(folder / "harmonic.flac", dtype="float64", always_2d=True)
        p, _ = sf.read(folder / "percussive.flac", dtype="float64", always_2d=True)
        # The layers add back to the input (24-bit FLAC: within a few LSB).
        assert np.max(np.abs(h + p - x.T)) < 1e-5
        assert json.loads((folder / "layers.json").read_text())["method"] == "hpss"
    assert not (out / "broken").exists()
    assert not _staging_left(out)
    records = mf.read(out / mf.MANIFEST_NAME)
    assert len(records) == 7
    bad = [r for r in records if r["output"] == "broken"]
    assert len(bad) == 1 and bad[0]["status"] == "error"
    assert "broken.wav" in bad[0]["error"] and "not an audio file" in bad[0]["error"]
    for r in records:
        assert r["peak_rss_mb"] > 10 and r["wall_s"] >= 0 and r["worker"]
        if r["status"] == "ok":
            assert r["audio_s"] == pytest.approx(3.0) and r["layers"] == ["harmonic", "percussive"]

    # Second run: the finished files are skipped (untouched), the corrupt one
    # is tried again, and a file changed since is separated again.
    mtimes = {rel: (out / rel / "harmonic.flac").stat().st_mtime_ns for rel in good}
    changed = tmp_path / "in" / "clip0.wav"
    sf.write(changed, good["clip0"].T[::-1].copy(), 16000, subtype="PCM_24")
    s2 = run_batch([tmp_path / "in"], "hpss", out, scheduler=scheduler)
    assert (s2.ok, s2.failed, s2.skipped) == (1, 1, 5)
    assert {r["output"] for r in s2.records if r["status"] == "skipped"} == set(good) - {"clip0"}
    for rel in good:
        if rel != "clip0":
            assert (out / rel / "harmonic.flac").stat().st_mtime_ns == mtimes[rel]
    h, _ = sf.read(out / "clip0" / "harmonic.flac", dtype="float64", always_2d=True)
    p, _ = sf.read(out / "clip0" / "percussive.flac", dtype="float64", always_2d=True)
    assert np.max(np.abs(h + p - good["clip0"].T[::-1])) < 1e-5
    assert len(mf.read(out / mf.MANIFEST_NAME)) == 14
    assert not _staging_left(out)


def test_interrupt_stops_cleanly_and_the_next_run_finishes(tmp_path, scheduler):
    good = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"

    def interrupt(rec):  # Ctrl+C arriving while the first results come in
        raise KeyboardInterrupt

    # A fixed 2000 NMF iterations make each file take about a second (hpss takes
    # 0.03 s), so files are still running when the interrupt comes: on a fast
    # machine quick settings finished every file before it reached them.
    slow = {"max_iter": 2000, "tol": 0.0}  # a dict of values, as scripts give
    with pytest.raises(KeyboardInterrupt):
        run_batch([tmp_path / "in"], "nmf", out, params=slow, scheduler=scheduler,
                  on_record=interrupt)
    records = mf.read(out / mf.MANIFEST_NAME)
    # Every file has its one record; the running ones stopped at their next
    # progress report and the queued ones never started.
    assert sorted(r["output"] for r in records) == sorted([*good, "broken"])
    # How many files finish between the first result and the interrupt
    # reaching the workers depends on the machine's speed; what must hold is
    # that the batch stopped early and every other file is recorded as
    # cancelled, not lost.
    statuses = [r["status"] for r in records]
    assert statuses.count("cancelled") >= 1, statuses
    assert set(statuses) <= {"ok", "error", "cancelled"}, statuses
    assert not _staging_left(out)
    # Whatever is under a final name is complete.
    for rel in good:
        if (out / rel).exists():
            assert mf.outputs_complete(out / rel)

    # Cancelling through the event (the GUI's way) also stops at once.
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run_batch([tmp_path / "in"], "hpss", out, scheduler=scheduler, cancel_event=stop)
    assert not _staging_left(out)

    # A list file as input, through the command line: the rest gets done.
    lst = tmp_path / "inputs.txt"
    lst.write_text("in\n", encoding="utf-8")
    code = main(["batch", str(lst), "--method", "hpss", "--set", "margin=2", "--out", str(out),
                 "--workers", "2", "--format", "wav", "--bits", "16"])
    assert code == 1  # the corrupt file failed
    for rel in good:
        assert sorted(p.name for p in (out / rel).iterdir()) == [
            "harmonic.wav", "layers.json", "noise.wav", "percussive.wav"]
    assert not _staging_left(out)


# --------------------------------------------------------------------------
# regressions: what a batch may write over, and what it takes as input
# --------------------------------------------------------------------------


def _one_clip(path: Path, seconds: float = 1.0) -> None:
    x, sr = sf.read(str(shared(SOURCES[0])), dtype="float32", always_2d=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x[:int(seconds * sr)], sr, subtype="PCM_16")


def test_batch_never_deletes_what_it_did_not_write(tmp_path, scheduler, capsys):
    # The output folder would be the input's own folder: refused, nothing touched.
    song = tmp_path / "d" / "song" / "song.wav"
    _one_clip(song)
    (song.parent / "notes.txt").write_text("mine")
    s = run_batch([song], "hpss", tmp_path / "d", scheduler=scheduler)
    assert (s.ok, s.failed) == (0, 1)
    assert "holds the input itself" in s.errors[0]["error"]
    assert sorted(p.name for p in song.parent.iterdir()) == ["notes.txt", "song.wav"]

    # An unrelated folder already at OUT/<name>/: refused, kept whole.
    clip = tmp_path / "in" / "clip.wav"
    _one_clip(clip)
    out = tmp_path / "out"
    (out / "clip").mkdir(parents=True)
    (out / "clip" / "mine.txt").write_text("mine")
    s = run_batch([clip], "hpss", out, scheduler=scheduler)
    assert (s.ok, s.failed) == (0, 1)
    assert "not an earlier result of this batch" in s.errors[0]["error"]
    assert [p.name for p in (out / "clip").iterdir()] == ["mine.txt"]
    # ... and the command line says so in one line naming the file once.
    assert main(["batch", str(clip), "--method", "hpss", "--out", str(out),
                 "--scheduler", scheduler]) == 1
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("failed:")]
    assert len(err) == 1 and err[0].count(str(clip)) == 1, err

    # A re-run with other settings replaces only its own files.
    out2 = tmp_path / "out2"
    assert run_batch([clip], "hpss", out2, scheduler=scheduler).ok == 1
    (out2 / "clip" / "notes.txt").write_text("mine")
    _one_clip(out2 / "clip" / "reference.wav")
    s = run_batch([clip], "hpss", out2, params={"margin": 2.0}, ext="wav", scheduler=scheduler)
    assert s.ok == 1, s.errors
    assert sorted(p.name for p in (out2 / "clip").iterdir()) == [
        "harmonic.wav", "layers.json", "noise.wav", "notes.txt", "percussive.wav",
        "reference.wav"]
    assert not _staging_left(out2)


def test_a_batch_does_not_take_its_own_results_as_inputs(tmp_path, scheduler):
    d = tmp_path / "d"
    _one_clip(d / "a.wav")
    _one_clip(d / "sub" / "b.wav")
    for _ in range(2):  # --out is the input folder itself
        s = run_batch([d], "hpss", d, scheduler=scheduler)
        assert s.total == 2, [r["input"] for r in s.records]
    # Another output folder inside the input folder: the first one's stems are not inputs.
    s = run_batch([d], "hpss", d / "stems-2", params={"margin": 2.0}, scheduler=scheduler)
    assert s.total == 2, [r["input"] for r in s.records]
    # The rule: files listed by a folder's layers.json are skipped, others there are not.
    assert {f.rel.as_posix() for f in collect_inputs([d])} == {"a", "sub/b"}
    _one_clip(d / "a" / "take2.wav")
    assert {f.rel.as_posix() for f in collect_inputs([d])} == {"a", "sub/b", "a/take2"}


def test_signature_follows_the_model_and_the_hint_files(tmp_path, monkeypatch):
    from demixstudio.batch import runner
    from demixstudio.separation.dnn import store

    class Info:
        def __init__(self, name, sha):
            self.name, self.sha256 = name, sha

    params = make_params(get_method("dnn").Params, strings={"model": "m"})
    monkeypatch.setattr(store, "list_models", lambda: [Info("m", "a" * 64)])
    def inputs():
        return runner._signature_inputs(runner._check_model_here(params, remote=False), ())

    first = inputs()
    monkeypatch.setattr(store, "list_models", lambda: [Info("m", "b" * 64)])
    assert inputs() != first  # re-imported under the same name

    hint = tmp_path / "h.wav"
    _one_clip(hint)
    spec = f"example:harmonic={hint}"
    before = runner._signature_inputs(None, (spec,))
    _one_clip(hint, seconds=0.5)  # rewritten in place
    os.utime(hint, ns=(1, 1))
    assert runner._signature_inputs(None, (spec,)) != before
    assert mf.signature("hpss", {}, [spec], "flac", "24", before) != \
        mf.signature("hpss", {}, [spec], "flac", "24", runner._signature_inputs(None, (spec,)))


def test_staging_left_by_a_killed_worker_is_swept(tmp_path, scheduler):
    clip = tmp_path / "in" / "clip.wav"
    _one_clip(clip)
    out = tmp_path / "out"
    left = out / f".clip{STAGING_TAG}deadbeef"  # what a worker killed mid-file leaves
    left.mkdir(parents=True)
    (left / "harmonic.flac").write_bytes(b"half")
    assert run_batch([clip], "hpss", out, scheduler=scheduler).ok == 1
    assert not _staging_left(out)


def test_a_read_only_file_system_is_named_as_such():
    import errno

    from demixstudio.audio.atomic import describe_os_error

    assert describe_os_error(OSError(errno.EROFS, "x")) == "read-only file system"
    assert describe_os_error(OSError(errno.EACCES, "x")) == "permission denied"


def test_losing_the_scheduler_mid_batch_is_one_line_and_files_stay_to_do(tmp_path, scheduler):
    """The scheduler of --scheduler killed mid-batch: one clear line, rc 1, and the
    files not done recorded as such (not as errors), so a re-run does them."""
    for i in range(4):
        _one_clip(tmp_path / "in" / f"c{i}.wav", seconds=2.0)
    out = tmp_path / "out"
    # Scheduler and worker in one process, so one SIGKILL takes the whole cluster.
    code = ("import time\nfrom distributed import LocalCluster\n"
            "c = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, "
            "host='127.0.0.1', protocol='tcp://', dashboard_address=None)\n"
            "print(c.scheduler_address, flush=True)\ntime.sleep(300)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cluster = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               env=env)
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        batch = subprocess.Popen(
            [sys.executable, "-m", "demixstudio", "batch", str(tmp_path / "in"), "--method",
             "nmf", "--set", "max_iter=2000", "--set", "tol=0", "--out", str(out),
             "--scheduler", address], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        manifest = out / mf.MANIFEST_NAME
        deadline = time.monotonic() + 60
        while not (manifest.is_file() and manifest.read_text().strip()):
            assert time.monotonic() < deadline and batch.poll() is None
            time.sleep(0.02)
        cluster.kill()  # after the first file, with the others queued or running
        _, err = batch.communicate(timeout=60)
    finally:
        cluster.kill()
        cluster.wait()
        cluster.stdout.close()
    assert batch.returncode == 1
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("batch nmf:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"demixstudio: error: lost the connection to the scheduler at "
                               f"{address}: ") and "run the same command again" in lines[0]
    records = mf.read(manifest)
    assert sorted(r["output"] for r in records) == [f"c{i}" for i in range(4)]
    assert records[0]["status"] == "ok"
    assert {r["status"] for r in records[1:]} == {"cancelled"}
    assert all(r["error"] == "lost the connection to the scheduler" for r in records[1:])
    assert f"{len(records) - 1} files not done" in lines[0]

    # The same batch again (on another scheduler): the rest gets done.
    s = run_batch([tmp_path / "in"], "nmf", out, params={"max_iter": 2000, "tol": 0.0},
                  scheduler=scheduler)
    assert (s.skipped, s.ok, s.failed) == (1, 3, 0)
    assert not _staging_left(out)


# --------------------------------------------------------------------------
# the dnn model: checked here and on every worker before any file
# --------------------------------------------------------------------------


def _store_with(root: Path, *names: str, seed: int = 0) -> None:
    """A model store at ``root`` holding tiny Wave-U-Nets called ``names``."""
    import torch

    from demixstudio.separation.dnn import store
    from demixstudio.separation.dnn.models import build_model

    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        torch.manual_seed(seed)
        m = build_model("waveunet", {"targets": ("vocals",), "sample_rate": 16000,
                                     "layers": 3, "growth": 4})
        store.save_model(m, root / name)


def test_an_unknown_or_ambiguous_model_is_refused_before_the_cluster(tmp_path, monkeypatch,
                                                                    capsys):
    from demixstudio.batch import runner
    from demixstudio.separation.dnn import store

    clip = tmp_path / "in" / "clip.wav"
    _one_clip(clip)
    out = tmp_path / "out"
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "store"))
    _store_with(tmp_path / "store", "a", "b")

    def no_cluster(*a, **k):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(runner, "local_cluster", no_cluster)
    with pytest.raises(ParameterError, match="no model 'nope' in"):
        run_batch([clip], "dnn", out, workers=1, params={"model": "nope"})
    with pytest.raises(ParameterError, match="set model=NAME; the store holds: a, b"):
        run_batch([clip], "dnn", out, workers=1)
    assert not out.exists()  # no manifest, no records
    rc = main(["batch", str(clip), "--method", "dnn", "--set", "model=nope", "--out", str(out),
               "--workers", "1"])
    err = capsys.readouterr().err
    assert rc != 0 and "no model 'nope'" in err and "Traceback" not in err
    assert not out.exists()


def test_a_worker_without_the_model_is_refused_up_front(tmp_path, monkeypatch):
    from distributed import LocalCluster

    from demixstudio.separation.dnn import store

    clip = tmp_path / "in" / "clip.wav"
    _one_clip(clip)
    out = tmp_path / "out"
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "store"))
    _store_with(tmp_path / "store", "m")
    empty = tmp_path / "worker-store"
    empty.mkdir()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env={store.ENV_VAR: str(empty)}) as cluster:
        with pytest.raises(DemixError, match=r"worker tcp://127\.0\.0\.1:\d+: no model 'm' in "
                           + str(empty).replace(".", r"\.") + ".*DEMIXSTUDIO_MODELS_DIR"):
            run_batch([clip], "dnn", out, scheduler=cluster.scheduler_address,
                      params={"model": "m"})
    assert not mf.read(out / mf.MANIFEST_NAME)  # not one file tried
    assert not out.exists()


def test_a_model_only_the_workers_have_is_in_the_signature(tmp_path, monkeypatch):
    """A remote batch whose model is in the workers' store but not this machine's:
    a re-run skips what is done, and after the model is re-imported on the
    workers (same name, other weights) it separates the file again."""
    from distributed import LocalCluster

    from demixstudio.separation.dnn import store

    clip = tmp_path / "in" / "clip.wav"
    _one_clip(clip)
    out = tmp_path / "out"
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "here"))  # holds no model
    there = tmp_path / "worker-store"
    _store_with(there, "m", seed=1)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env={store.ENV_VAR: str(there)}) as cluster:
        go = functools.partial(run_batch, [clip], "dnn", out,
                               scheduler=cluster.scheduler_address, params={"model": "m"})
        assert go().ok == 1
        assert go().skipped == 1
        _store_with(there, "m", seed=2)  # re-imported there under the same name
        again = go()
        assert again.ok == 1 and again.skipped == 0


def test_a_worker_with_another_copy_of_the_model_is_named(tmp_path, monkeypatch):
    from demixstudio.batch import runner
    from demixstudio.batch.task import model_on_worker
    from demixstudio.separation.dnn import store

    here_root, there_root = tmp_path / "here", tmp_path / "there"
    _store_with(here_root, "m", seed=1)
    _store_with(there_root, "m", seed=2)  # same name, other weights
    monkeypatch.setenv(store.ENV_VAR, str(there_root))
    there = model_on_worker("m")
    monkeypatch.setenv(store.ENV_VAR, str(here_root))
    here = model_on_worker("m")
    assert here["sha256"] != there["sha256"]

    class Client:
        def run(self, fn, *args):
            return {"tcp://w1:1": here, "tcp://w2:2": there}

    with pytest.raises(DemixError, match=r"^worker tcp://w2:2: model 'm' in .*there has sha256"):
        runner._check_worker_models(Client(), "m", here)
    with pytest.raises(DemixError, match="the workers' copies differ"):
        # not in the coordinator's store (a remote batch): the workers must agree
        runner._check_worker_models(Client(), "m", dict(here, sha256=None))

    class Agreeing:
        def run(self, fn, *args):
            return {"tcp://w1:1": here}

    runner._check_worker_models(Agreeing(), "m", here)  # passes
