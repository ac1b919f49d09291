"""The work of one file, as it runs inside a batch worker.

``separate_file`` never raises for a bad file: it returns the manifest
record, with ``status`` "ok", "error" or "cancelled". Outputs are written
into a hidden staging folder beside the final one and renamed into place
only when every layer and ``layers.json`` are complete, so the final folder
``OUT/<rel>/`` is either absent, the previous complete result, or the new
complete result — never half-written, whatever stops the work.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from demixstudio.errors import Cancelled, DemixError, OutputError
from demixstudio.jobs.context import JobContext

try:
    import resource  # POSIX only: the worker process's lifetime peak memory
except ImportError:  # pragma: no cover - Windows
    resource = None

#: Prefix of staging folders (hidden, so folder scans and users skip them).
STAGING_TAG = ".partial-"
#: The record each output folder holds (as ``separate`` writes it).
LAYERS_JSON = "layers.json"
#: How often the worker asks the scheduler whether the batch was cancelled.
CANCEL_POLL_S = 1.0
#: Memory sampling period (s) for the per-file peak.
MEMORY_POLL_S = 0.02


@dataclass(frozen=True)
class FileTask:
    """Everything a worker needs for one file (small and picklable).

    params : the method's params instance; hint_specs : ``KIND:TARGET=FILE``
    strings, loaded on the worker at the file's own rate.
    """

    input: str
    output: str  # relative output folder, POSIX
    out_root: str
    method: str
    params: Any
    signature: str
    ext: str = "flac"
    bits: str = "24"
    hint_specs: Tuple[str, ...] = ()
    threads: int = 1
    cancel_event: Optional[str] = None  # name of a distributed.Event
    stamp: Dict[str, int] = field(default_factory=dict)


def pin_threads(threads: int) -> None:
    """Keep each worker process to ``threads`` compute threads.

    The BLAS/OpenMP variables must be set before those libraries load (the
    local cluster sets them in each worker's environment); torch also
    honours ``set_num_threads`` at any time, which covers remote workers.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def prepare_worker(method: str, threads: int, ignore_sigint: bool = False) -> Dict[str, Any]:
    """Run once on every worker before the files: import the method, pin threads.

    Fails early (and clearly) if a remote worker lacks DemixStudio or the method.
    ``ignore_sigint`` (local workers only): a Ctrl+C in the terminal reaches
    the whole process group; the coordinator alone should act on it, stopping
    the tasks through the batch's cancel flag, rather than every worker dying
    mid-file with a traceback.
    """
    from demixstudio.separation.registry import get_method

    get_method(method)
    pin_threads(threads)
    if ignore_sigint and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return {"pid": os.getpid(), "host": socket.gethostname()}


def model_on_worker(name: str) -> Dict[str, Any]:
    """The DNN model this worker would use for ``model=name``, from its own store.

    Resolved as the ``dnn`` method resolves it (an empty name: the only stored
    model). Returns ``{"store", "name", "sha256"}``, with ``"error"`` (one line)
    in place of name and checksum when the worker has no such model.
    """
    from demixstudio.separation.dnn import store
    from demixstudio.separation.dnn.method import resolve_model_name

    out: Dict[str, Any] = {"store": str(store.models_dir())}
    try:
        resolved = resolve_model_name(name)
        found = [m for m in store.list_models() if m.name == resolved]
        if not found:
            raise DemixError(f"no model {resolved!r} in {out['store']}")
        out.update(name=resolved, sha256=found[0].sha256)
    except DemixError as exc:
        out["error"] = str(exc)
    return out


class _PeakMemory:
    """Peak resident memory of this process while a file is processed (MB)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        try:
            import psutil

            self._proc = psutil.Process()
        except ImportError:  # psutil comes with distributed; be safe anyway
            self._proc = None

    def _rss(self) -> int:
        return int(self._proc.memory_info().rss) if self._proc is not None else 0

    def _run(self) -> None:
        while not self._stop.wait(MEMORY_POLL_S):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "_PeakMemory":
        self.start = self._rss()
        self.peak = self.start
        if self._proc is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._rss())


class _WorkerContext(JobContext):
    """A job context that also stops when the batch's distributed Event is set."""

    def __init__(self, event_name: Optional[str]) -> None:
        super().__init__(on_progress=None)
        self._event = None
        self._last_poll = 0.0
        if event_name:
            with contextlib.suppress(ValueError, ImportError, RuntimeError):
                from distributed import Event

                self._event = Event(event_name)

    def check(self) -> None:
        now = time.monotonic()
        if self._event is not None and now - self._last_poll >= CANCEL_POLL_S:
            self._last_poll = now
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                if self._event.is_set():
                    self.cancel_event.set()
        super().check()


def staging_folders(final: Path):
    """Staging folders left beside ``final`` by interrupted attempts."""
    if not final.parent.is_dir():
        return []
    prefix = f".{final.name}{STAGING_TAG}"
    return [p for p in final.parent.iterdir() if p.name.startswith(prefix)]


def listed_files(folder: Path) -> Optional[set]:
    """The file names ``folder/layers.json`` lists, plus ``layers.json`` itself,
    or None if there is no readable ``layers.json``."""
    try:
        doc = json.loads((folder / LAYERS_JSON).read_text(encoding="utf-8"))
        names = {Path(x["file"]).name for x in doc["layers"] if x.get("file")}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return names | {LAYERS_JSON}


def _publish(staging: Path, final: Path) -> None:
    """Put the complete ``staging`` folder's files at ``final``.

    A new folder is renamed into place whole. An existing one (an earlier
    result of this batch: the coordinator refuses any other) keeps every file
    the batch did not write: only the new stems and ``layers.json`` replace
    theirs (``layers.json`` last), then stems of the earlier result that this
    one no longer has are removed — nothing else is ever deleted.
    """
    if not final.exists():
        try:
            os.replace(staging, final)
            return
        except OSError:
            if not final.is_dir():
                raise
    if not final.is_dir():
        raise OutputError(f"{final} exists and is not a folder")
    old = (listed_files(final) or set()) - {LAYERS_JSON}
    new = sorted(p.name for p in staging.iterdir() if p.name != LAYERS_JSON)
    for name in new:
        os.replace(staging / name, final / name)
    os.replace(staging / LAYERS_JSON, final / LAYERS_JSON)
    for name in old - set(new):
        with contextlib.suppress(OSError):
            (final / name).unlink()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def separate_file(task: FileTask) -> Dict[str, Any]:
    """Separate one file into ``out_root/output/``; returns its manifest record."""
    from demixstudio.audio.io import audio_info
    from demixstudio.separation.base import params_to_dict
    from demixstudio.separation.hintfiles import load_hints
    from demixstudio.session.operations import separate_to_folder

    rec: Dict[str, Any] = {
        "input": task.input, "output": task.output, "method": task.method,
        "params": params_to_dict(task.params), "signature": task.signature,
        "input_size": task.stamp.get("size"), "input_mtime_ns": task.stamp.get("mtime_ns"),
        "worker": f"{socket.gethostname()}:{os.getpid()}", "started": _now(),
    }
    final = Path(task.out_root) / task.output
    staging = final.with_name(f".{final.name}{STAGING_TAG}{uuid.uuid4().hex[:8]}")
    t0 = time.monotonic()
    cpu0 = time.thread_time()  # the task runs on this thread; compute threads are pinned to 1
    mem = _PeakMemory()
    try:
        with mem:
            pin_threads(task.threads)
            final.parent.mkdir(parents=True, exist_ok=True)
            for stale in staging_folders(final):
                shutil.rmtree(stale, ignore_errors=True)
            info = audio_info(task.input)
            rec["audio_s"] = round(info.duration_s, 3)
            told: list = []
            hints = (load_hints(task.hint_specs, info.sr, on_warning=told.append)
                     if task.hint_specs else None)
            ctx = _WorkerContext(task.cancel_event)
            doc = separate_to_folder(task.input, task.method, staging, params=task.params,
                                     hints=hints, ctx=ctx, ext=task.ext, bits=task.bits,
                                     hint_warnings=told)
            _publish(staging, final)
        rec.update(status="ok", layers=[x["name"] for x in doc["layers"]],
                   files=[x["file"] for x in doc["layers"] if x.get("file")],
                   separate_s=doc["elapsed_s"], error=None)
        clipped = {x["file"]: x["clipped_db"] for x in doc["layers"] if "clipped_db" in x}
        if clipped:  # stems an integer format clipped (dBFS peaks): float WAV keeps them
            rec["clipped_db"] = clipped
        if doc.get("warnings"):  # e.g. an input cut short: separated, but said
            rec["warnings"] = doc["warnings"]
    except Cancelled:
        rec.update(status="cancelled", error="cancelled")
    except DemixError as exc:
        rec.update(status="error", error=str(exc))
    except MemoryError:
        rec.update(status="error", error="out of memory; give workers more memory "
                                         "(--memory-limit) or use fewer workers")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        rec.update(status="error", error=f"internal error: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    wall = time.monotonic() - t0
    rec["finished"] = _now()
    rec["wall_s"] = round(wall, 3)
    rec["cpu_s"] = round(time.thread_time() - cpu0, 3)
    if rec.get("audio_s"):
        rec["x_realtime"] = round(rec["audio_s"] / wall, 2) if wall > 0 else None
    rec["rss_start_mb"] = round(mem.start / 2 ** 20, 1) if mem._proc is not None else None
    rec["peak_rss_mb"] = round(mem.peak / 2 ** 20, 1) if mem._proc is not None else None
    if resource is not None:
        # Lifetime peak of the worker process (ru_maxrss: KiB on Linux, bytes on macOS).
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 2 ** 20 if sys.platform == "darwin" else 2 ** 10
        rec["process_peak_rss_mb"] = round(maxrss / scale, 1)
    return rec
