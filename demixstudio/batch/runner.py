"""Run a method over many files on a Dask cluster: local by default, remote on request.

One Dask task per file. By default a ``LocalCluster`` of ``workers`` worker
processes (one thread each, loopback only, no dashboard, quiet logs) runs on
this machine; ``scheduler="tcp://host:port"`` sends the same tasks to an
existing cluster, whose workers must have DemixStudio installed and see the
input and output paths.

The coordinating process owns the manifest: it skips files already done,
appends each record as its task finishes, reports progress (weighted by
duration, so the ETA is in audio, not in file counts) and on cancel or
Ctrl+C cancels the tasks, tells running ones to stop, closes the cluster and
removes staging folders — nothing half-written is ever left under a final
name (see ``task.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from demixstudio.audio.atomic import describe_os_error
from demixstudio.audio.io import audio_info, output_format
from demixstudio.batch import manifest as mf
from demixstudio.batch.inputs import InputFile, collect_inputs
from demixstudio.batch.task import (LAYERS_JSON, FileTask, listed_files, model_on_worker,
                                    prepare_worker, separate_file, staging_folders)
from demixstudio.errors import AudioFormatError, DemixError, OutputError, ParameterError
from demixstudio.jobs.context import JobContext, ProgressCallback
from demixstudio.separation.base import params_to_dict
from demixstudio.session.session import checked_params
from demixstudio.separation.hintfiles import parse_hint_spec
from demixstudio.separation.registry import get_method
from demixstudio.session.operations import (check_device_present, missing_folders,
                                            remove_empty_folders)

#: Environment of local worker processes, set before they start (the C
#: libraries read it at load time). One compute thread each, so N workers on
#: N cores don't oversubscribe (torch, OpenBLAS, MKL, OpenMP). And malloc
#: settings: Dask's default MALLOC_TRIM_THRESHOLD_=65536 turns off glibc's
#: adaptive mmap threshold, so every array above 128 KiB is mapped and
#: unmapped afresh; the page faults made our spectrogram code 3-4x slower
#: (measured: hpss on 14 s of stereo, 18 s instead of 5 s). Arrays below
#: 32 MiB are reused from the heap; larger ones (whole masks) still go back
#: to the system at once.
WORKER_ENV = {
    **{var: "1" for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                            "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")},
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2 ** 20),
    "MALLOC_TRIM_THRESHOLD_": str(128 * 2 ** 20),
}
#: No dashboard; the scheduler's small HTTP endpoint (health, metrics) on a
#: free loopback port rather than 8787, which may be taken.
LOCAL_SCHEDULER = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
#: How often the coordinator looks for finished tasks and for a cancel request.
POLL_S = 0.1
#: How long a stopped batch waits for running tasks to notice and clean up.
CANCEL_GRACE_S = 15.0
#: Progress weight of a file whose duration can't be read (it will fail fast).
UNKNOWN_WEIGHT_S = 1.0


@dataclass
class BatchSummary:
    """What a batch did. ``records``: this run's manifest records (skips first, then as finished)."""

    out: Path
    manifest: Path
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    elapsed_s: float = 0.0
    records: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def errors(self) -> List[Dict[str, Any]]:
        return [r for r in self.records if r["status"] == "error"]


def _check_workers(workers: Optional[int]) -> int:
    n = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(n, int) or n < 1:
        raise ParameterError(f"workers={workers!r} must be a positive integer")
    return n


def _check_memory_limit(limit: Optional[str]) -> Any:
    """Dask's form of a per-worker memory limit: "auto", a byte count, or None (no limit)."""
    if limit in (None, "", "auto"):
        return "auto"
    if str(limit).lower() in ("0", "none", "off"):
        return None
    from dask.utils import parse_bytes

    try:
        value = parse_bytes(str(limit))
    except (ValueError, TypeError):
        raise ParameterError(f"memory limit {limit!r} is not a size such as 4GB, 512MiB, "
                             "auto or none") from None
    if value < 64 * 2 ** 20:
        raise ParameterError(f"memory limit {limit!r} is below 64 MB per worker")
    return value


def local_cluster(workers: int, memory_limit: Any = "auto"):
    """A ``LocalCluster`` as batches use it: ``workers`` single-threaded worker
    processes on loopback, no dashboard, quiet logs (failures reach the manifest
    instead), ``WORKER_ENV``.

    ``memory_limit`` per worker, in Dask's form ("auto", bytes, or None).
    """
    import dask
    from distributed import LocalCluster

    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **WORKER_ENV}
    # A file that kills its worker (out of memory) is tried once more, not
    # three times: each attempt costs a worker restart.
    cluster = None
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                              "distributed.scheduler.allowed-failures": 1}), _sigint_ignored():
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", silence_logs=logging.CRITICAL,
                                   memory_limit=memory_limit, scheduler_kwargs=LOCAL_SCHEDULER)
    except KeyboardInterrupt:
        # Ctrl+C at the edge of start-up (outside the main thread, or just as
        # SIGINT was restored): close what was made quietly and let it through.
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        raise
    return cluster


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore SIGINT (Ctrl+C) while a local cluster starts its worker processes.

    A Ctrl+C in the terminal reaches the whole process group. Worker processes
    spawned while SIGINT is ignored inherit that (an ignored signal stays
    ignored across fork and exec, and Python then installs no
    ``KeyboardInterrupt`` handler), so they never die mid-import with a
    traceback each; the coordinator alone acts on Ctrl+C (see
    ``task.prepare_worker``). Dask's start-up is not interrupted half-way
    either (a half-made cluster failed again at exit). The cost: a Ctrl+C in
    the seconds of start-up is dropped; the next one stops the batch cleanly.
    Signal handlers belong to the main thread: elsewhere (the GUI) nothing is
    changed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)


#: Schemes whose location is HOST:PORT, checked here before connecting
#: (Dask's TCP connector needs the port; it has no default).
HOST_PORT_SCHEMES = ("tcp", "tls")


def check_scheduler_address(address: str) -> str:
    """The address of a Dask scheduler in Dask's canonical form, or ``ParameterError``.

    Accepts what ``distributed.Client`` connects to: ``tcp://HOST:PORT``,
    ``HOST:PORT`` (Dask's default scheme, tcp), ``tls://HOST:PORT``,
    ``ws://``/``wss://`` URLs, and the other schemes Dask has a backend for.
    Checked before connecting because Dask reports a malformed address as a
    ``ValueError`` from deep inside its client (after which the half-made
    client hangs for 40 s and prints a traceback as it is collected).
    """
    import ipaddress

    from distributed.comm.addressing import parse_address, parse_host_port, unparse_address
    from distributed.comm.registry import get_backend

    text = str(address).strip()
    form = "give it as tcp://HOST:PORT or HOST:PORT, e.g. tcp://10.0.0.5:8786"
    if not text:
        raise ParameterError(f"the scheduler address is empty; {form}")
    scheme, loc = parse_address(text)
    try:
        get_backend(scheme)
    except (ValueError, ImportError):
        raise ParameterError(f"scheduler address {address!r}: unknown scheme {scheme!r}; "
                             f"{form}") from None
    if not loc or any(c.isspace() for c in loc):
        raise ParameterError(f"scheduler address {address!r} is not an address; {form}")
    if scheme in HOST_PORT_SCHEMES:
        try:
            host, port = parse_host_port(loc)
        except ValueError:
            raise ParameterError(f"scheduler address {address!r} needs a host and a port; "
                                 f"{form}") from None
        if not host:
            raise ParameterError(f"scheduler address {address!r} has no host; {form}")
        if not 0 < port < 65536:
            raise ParameterError(f"scheduler address {address!r}: port {port} is not "
                                 "between 1 and 65535")
        try:
            ipaddress.ip_address(host)
        except ValueError:  # a host name: one the resolver can be asked about
            try:
                host.encode("idna")
            except UnicodeError:
                raise ParameterError(f"scheduler address {address!r}: {host!r} is not a "
                                     "valid host name") from None
    return unparse_address(scheme, loc)


def _close_half_made_client(exc: BaseException) -> None:
    """Close the ``Client`` whose constructor raised ``exc``, if it got that far.

    ``Client.__init__`` cleans up after itself only on OSError; after any other
    error its half-made instance, found only in the traceback, would hang for
    40 s when garbage-collected and print a traceback from ``__del__``.
    Closed here, at once, it does neither.
    """
    from distributed import Client

    tb = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, Client):
            with contextlib.suppress(Exception):
                obj.close(timeout=2)
            return
        tb = tb.tb_next


def _connect(scheduler: str):
    """A ``distributed.Client`` connected to an existing scheduler, or ``DemixError``."""
    from distributed import Client

    address = check_scheduler_address(scheduler)
    try:
        return Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise DemixError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - anything else Dask raises while connecting
        _close_half_made_client(exc)
        raise DemixError(f"cannot connect to the Dask scheduler at {scheduler}: "
                         f"{type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _cluster(workers: int, scheduler: Optional[str], memory_limit: Any):
    """A connected ``distributed.Client``; the local cluster (if any) closes on exit."""
    from distributed import Client

    if scheduler:
        client = _connect(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = local_cluster(workers, memory_limit)
    try:
        client = Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _weight(f: InputFile) -> float:
    try:
        return max(audio_info(f.path).duration_s, 1e-3)
    except AudioFormatError:
        return UNKNOWN_WEIGHT_S


def _bar(fraction: float, width: int = 20) -> str:
    full = int(round(fraction * width))
    return "[" + "#" * full + "." * (width - full) + "]"


def _describe_failure(exc: BaseException, memory_limit: Any) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        from dask.utils import format_bytes

        limit = ("" if memory_limit in (None, "auto")
                 else f" (limit {format_bytes(memory_limit)} per worker)")
        return ("the worker process died while separating this file, most likely out of "
                f"memory{limit}; try --memory-limit with more memory or fewer --workers")
    return f"the task failed: {name}: {exc}"


def run_batch(inputs: Sequence[os.PathLike | str], method: str, out: os.PathLike | str, *,
              params: Any = None, hint_specs: Sequence[str] = (), ext: str = "flac",
              bits: str = "24", workers: Optional[int] = None, scheduler: Optional[str] = None,
              memory_limit: Optional[str] = "auto",
              on_progress: Optional[ProgressCallback] = None,
              cancel_event: Optional[threading.Event] = None,
              on_record: Optional[Callable[[Dict[str, Any]], None]] = None) -> BatchSummary:
    """Separate every file named by ``inputs`` into ``out/<relative path>/``.

    Parameters
    ----------
    inputs : files, folders (recursive) and list files (see ``inputs.py``)
    method, params : the separation method and its params (its Params, a dict of
        values as ``--set`` or a project gives them, or None for the defaults)
    hint_specs : ``KIND:TARGET=FILE`` hints applied to every file
    ext, bits : output format of the layers ("flac"/"wav"; "16"/"24"/"float")
    workers : local worker processes (default: the number of CPUs); ignored with ``scheduler``
    scheduler : address of an existing Dask scheduler, e.g. ``tcp://10.0.0.5:8786``
    memory_limit : per local worker: "auto" (Dask's share of RAM), "4GB", or "none"
    on_progress : receives ``jobs.Progress`` reports: the fraction of the pending audio
        (by duration) done, a bar and counts; the clock (and so the ETA) starts
        when the workers are ready, so cluster start-up does not skew it
    cancel_event : set it (from any thread) to stop the batch cleanly
    on_record : called with each manifest record as it is written

    Returns a ``BatchSummary``. Files already done are skipped (see
    ``manifest.is_done``); failures are recorded, never raised. Raises
    ``Cancelled`` (or lets ``KeyboardInterrupt`` through) after a clean stop.
    """
    ctx = JobContext(on_progress=on_progress, cancel_event=cancel_event)
    t_start = time.monotonic()
    out = Path(out)
    n_workers = _check_workers(workers)
    limit = _check_memory_limit(memory_limit)
    if scheduler:
        scheduler = check_scheduler_address(scheduler)
    m = get_method(method)
    params = checked_params(m, params)  # None: the defaults; a dict: typed values
    if scheduler is None:
        check_device_present(params)
    model = _check_model_here(params, remote=scheduler is not None)
    if model is not None and model["sha256"] is None:
        # Only the workers have it: their checksum goes into the signature, so a
        # model re-imported there under the same name has the files done again.
        with _cluster(n_workers, scheduler, limit) as client:
            try:
                model = dict(model, sha256=_check_worker_models(client, params.model, model))
            except ImportError as exc:
                raise _cannot_import(exc) from exc
    hint_specs = tuple(hint_specs)
    for spec in hint_specs:
        _, _, path = parse_hint_spec(spec)
        if not path.is_file():
            raise ParameterError(f"hint file {path}: no such file")
    files = collect_inputs(inputs, exclude=out)
    if not files:
        raise ParameterError("no audio files found in " + ", ".join(map(str, inputs)))
    output_format(f"layer.{ext}", bits)  # e.g. FLAC with float samples: refuse before work
    made = missing_folders(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out}: "
                          f"{describe_os_error(exc)}") from exc
    out_root = out.resolve()
    manifest = out_root / mf.MANIFEST_NAME
    sig = mf.signature(method, params_to_dict(params), hint_specs, ext, bits,
                       _signature_inputs(model, hint_specs))
    summary = BatchSummary(out=out_root, manifest=manifest, total=len(files))
    unfinished: List[InputFile] = []
    try:
        # Decide what is done already.
        history = mf.read(manifest)
        previous = mf.latest(history)
        published = {r["output"] for r in history if r["status"] == "ok"}
        pending: List[tuple] = []
        skipped = []
        refused = []
        for f in files:
            stamp = mf.input_stamp(f.path)
            key = f.rel.as_posix()
            if mf.is_done(previous.get(key), out_root, sig, stamp):
                skipped.append({"input": str(f.path), "output": key, "method": method,
                                "signature": sig, "status": "skipped",
                                "reason": "done in an earlier run", "finished": None})
                continue
            problem = output_conflict(f, out_root, published)
            if problem:
                refused.append({"input": str(f.path), "output": key, "method": method,
                                "signature": sig, "status": "error", "error": problem,
                                "finished": None})
            else:
                pending.append((f, stamp))
        # Whatever an earlier attempt of these files left half-written (a
        # killed worker, a killed coordinator) goes before any new work.
        remove_staging(out_root, [f for f, _ in pending])
        mf.append(manifest, skipped + refused)
        summary.skipped = len(skipped)
        summary.failed = len(refused)
        summary.records.extend(skipped + refused)
        if not pending:
            ctx.progress(1, 1, f"{_bar(1.0)} all {len(files)} files done before")
            return summary

        ctx.check()  # cancelled already: don't start a cluster
        weights = [_weight(f) for f, _ in pending]
        total_w, done_w = sum(weights), 0.0
        n_done = 0

        def report() -> None:
            frac = done_w / total_w
            failed = f", {summary.failed} failed" if summary.failed else ""
            ctx.progress(done_w, total_w, f"{_bar(frac)} {n_done}/{len(pending)} files{failed}")

        token = uuid.uuid4().hex[:10]
        cancel_name = f"demixstudio-cancel-{token}"
        futures = []
        with _cluster(n_workers, scheduler, limit) as client:
            from distributed import Event, as_completed

            cancel_flag = Event(cancel_name, client=client)
            try:
                client.run(prepare_worker, method, 1, scheduler is None)
            except DemixError as exc:
                raise DemixError(f"the workers cannot run {method!r}: {exc}") from exc
            except ImportError as exc:
                raise _cannot_import(exc) from exc
            if model is not None:
                _check_worker_models(client, params.model, model)
            index = {}
            for i, ((f, stamp), w) in enumerate(zip(pending, weights)):
                task = FileTask(input=str(f.path), output=f.rel.as_posix(),
                                out_root=str(out_root), method=method, params=params,
                                signature=sig, ext=ext, bits=bits, hint_specs=hint_specs,
                                threads=1, cancel_event=cancel_name, stamp=stamp)
                fut = client.submit(separate_file, task, key=f"demixstudio-{token}-{i}",
                                    pure=False, retries=0)
                futures.append(fut)
                index[fut.key] = (f, w)
            finished = set()

            def accept(fut, rec: Dict[str, Any]) -> None:
                nonlocal n_done, done_w
                finished.add(fut.key)
                mf.append(manifest, [rec])
                summary.records.append(rec)
                summary.ok += rec["status"] == "ok"
                summary.failed += rec["status"] == "error"
                summary.cancelled += rec["status"] == "cancelled"
                if rec["status"] == "error":
                    # A worker killed mid-file (out of memory) could not clean up
                    # its staging folder; its task is over, so it goes now.
                    remove_staging(out_root, [index[fut.key][0]])
                n_done += 1
                done_w += index[fut.key][1]

            # The clock of the ETA starts now that the workers are ready.
            ctx = JobContext(on_progress=on_progress, cancel_event=ctx.cancel_event)
            report()
            lost = False
            try:
                ac = as_completed(futures, loop=client.loop)
                while not ac.is_empty() and not lost:
                    ctx.check()
                    ready = ac.next_batch(block=False)
                    if not ready:
                        time.sleep(POLL_S)
                        continue
                    for fut in ready:
                        if _scheduler_lost(client, fut):
                            lost = True  # every task still out is gone with it
                            break
                        accept(fut, _record_of(fut, index[fut.key][0], method, sig, limit))
                        if on_record is not None:
                            on_record(summary.records[-1])
                        report()
            except BaseException:  # Cancelled, KeyboardInterrupt, a failing callback
                _stop(client, cancel_flag, futures, finished, index, accept, manifest, summary,
                      method, sig)
                unfinished = [f for key, (f, _) in index.items() if key not in finished]
                raise
            if lost:
                n_lost = _record_lost(index, finished, manifest, summary, method, sig)
                if scheduler is None:  # local workers are gone once the cluster closes
                    unfinished = [f for key, (f, _) in index.items() if key not in finished]
                # Remote workers may still be writing (their staging folders
                # are swept by the next run, before it starts any work).
                with _quiet_client_logs():
                    client.close(timeout=5)
        if lost:
            where = scheduler or "the local cluster"
            raise DemixError(f"lost the connection to the scheduler at {where}: {n_lost} "
                             f"file{'s' if n_lost != 1 else ''} not done; run the same command "
                             "again to finish them")
    finally:
        # Only now are local workers gone: sweep what interrupted tasks left.
        remove_staging(out_root, unfinished)
        # A batch that stopped before writing anything (scheduler unreachable,
        # workers that cannot run the method) leaves no empty folder behind;
        # only folders this call created, and only if empty, are removed.
        remove_empty_folders(made)
        summary.elapsed_s = time.monotonic() - t_start
    return summary


def _stop(client, cancel_flag, futures, finished, index, accept, manifest: Path,
          summary: BatchSummary, method: str, sig: str) -> None:
    """Stop a batch cleanly: running tasks stop themselves, queued ones are dropped.

    The cancel flag makes every task raise ``Cancelled`` at its next progress
    report (queued ones at their first), so within ``CANCEL_GRACE_S`` all end
    and clean up their own staging folders; their records are kept. Whatever
    is still out after that is cancelled by force and recorded as such. A
    second Ctrl+C during the grace period skips the wait.
    """
    with contextlib.suppress(Exception):
        cancel_flag.set()
    out = [x for x in futures if x.key not in finished]
    deadline = time.monotonic() + CANCEL_GRACE_S
    try:
        while out and time.monotonic() < deadline:
            for fut in [x for x in out if x.done()]:
                accept(fut, _record_of(fut, index[fut.key][0], method, sig, None))
            out = [x for x in out if x.key not in finished]
            time.sleep(POLL_S)
    except (KeyboardInterrupt, DemixError):
        pass
    with contextlib.suppress(Exception):
        client.cancel([x for x in futures if x.key not in finished], force=True)
    lost = [{"input": str(f.path), "output": f.rel.as_posix(), "method": method,
             "signature": sig, "status": "cancelled", "error": "the batch was stopped"}
            for key, (f, _) in index.items() if key not in finished]
    with contextlib.suppress(DemixError):
        mf.append(manifest, lost)
    summary.records.extend(lost)
    summary.cancelled += len(lost)


def _scheduler_lost(client, fut) -> bool:
    """Whether ``fut`` came back because the client lost its scheduler (killed,
    restarted, the network gone): Dask then marks every future it holds as
    cancelled, which is not the file's fault and must not be recorded as its error."""
    if fut.status != "cancelled":
        return False
    exc = getattr(getattr(fut, "_state", None), "exception", None)
    return (getattr(exc, "reason", None) == "scheduler-connection-lost"
            or client.status != "running")


def _record_lost(index, finished, manifest: Path, summary: BatchSummary, method: str,
                 sig: str) -> int:
    """Record every file without a record yet as not done (``cancelled``: a re-run does it)."""
    lost = [{"input": str(f.path), "output": f.rel.as_posix(), "method": method,
             "signature": sig, "status": "cancelled",
             "error": "lost the connection to the scheduler"}
            for key, (f, _) in index.items() if key not in finished]
    with contextlib.suppress(DemixError):
        mf.append(manifest, lost)
    summary.records.extend(lost)
    summary.cancelled += len(lost)
    return len(lost)


@contextlib.contextmanager
def _quiet_client_logs():
    """Silence ``distributed.client``'s own ERROR lines (tracebacks of the lost
    connection) while a client whose scheduler is gone is closed: the batch
    reports the loss itself, once."""
    log = logging.getLogger("distributed.client")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _record_of(fut, f: InputFile, method: str, sig: str, limit: Any) -> Dict[str, Any]:
    """The manifest record of a finished future (its own, or one describing its failure)."""
    if fut.status == "finished":
        return fut.result()
    exc = fut.exception() if fut.status == "error" else None
    return {"input": str(f.path), "output": f.rel.as_posix(), "method": method,
            "signature": sig, "status": "error",
            "error": _describe_failure(exc, limit) if exc is not None
            else f"the task ended as {fut.status}"}


def _check_model_here(params: Any, remote: bool) -> Optional[Dict[str, Any]]:
    """The model a ``dnn`` batch will use, resolved here before any work, or None
    if the method takes no model.

    An unknown or ambiguous model is a ``ParameterError`` at once (for a local
    batch, before its cluster starts). With a remote scheduler a model named
    explicitly need not be in this machine's store (the workers read their
    own); ``_check_worker_models`` then checks them.
    """
    name = getattr(params, "model", None)
    if not isinstance(name, str):
        return None
    here = model_on_worker(name)
    if "error" in here:
        if remote and name:
            return {"store": here["store"], "name": name, "sha256": None}
        raise ParameterError(here["error"])
    return here


def _cannot_import(exc: ImportError) -> DemixError:
    """The one-line error for workers without DemixStudio (or one of its modules)."""
    return DemixError(f"the workers cannot import DemixStudio ({exc}); install it on every "
                      "worker of the cluster")


def _check_worker_models(client, name: str, here: Dict[str, Any]) -> str:
    """Refuse the batch, in one line, unless every worker has the model ``here``
    describes (same name and checksum) in its own store; ``here["sha256"]`` None
    (not in this machine's store): unless the workers' copies agree. Returns
    the checksum they have."""
    from demixstudio.separation.dnn.store import ENV_VAR

    answers = client.run(model_on_worker, name)
    want_sha = here["sha256"]
    if want_sha is None:  # not in this machine's store: the workers must agree among themselves
        shas = {a.get("sha256") for a in answers.values() if "error" not in a}
        want_sha = shas.pop() if len(shas) == 1 else None
    bad = []
    for addr, a in sorted(answers.items()):
        if "error" in a:
            bad.append(f"worker {addr}: {a['error']}")
        elif a["name"] != here["name"]:
            bad.append(f"worker {addr}: would use model {a['name']!r} from {a['store']}, "
                       f"not {here['name']!r}")
        elif a["sha256"] != want_sha:
            what = (f"not {want_sha[:12]}… (the one in {here['store']})" if want_sha
                    else "and the workers' copies differ")
            bad.append(f"worker {addr}: model {a['name']!r} in {a['store']} has sha256 "
                       f"{a['sha256'][:12]}…, {what}")
    if bad:
        raise DemixError("; ".join(bad) + f"; set {ENV_VAR} on the workers to a store "
                         f"holding model {here['name']!r}, or import it there")
    return want_sha


def _signature_inputs(model: Optional[Dict[str, Any]], hint_specs: Sequence[str]
                      ) -> Dict[str, Any]:
    """What decides the outputs besides the parameters' values (see
    ``manifest.signature``): the DNN model's name and checksum (``model``, as
    :func:`_check_model_here` resolved it), the hint files' size and mtime."""
    extra: Dict[str, Any] = {}
    if model is not None and model.get("sha256"):
        extra["model"] = {"name": model["name"], "sha256": model["sha256"]}
    for spec in hint_specs:
        _, _, path = parse_hint_spec(spec)
        stamp = mf.input_stamp(path)
        extra.setdefault("hint_files", {})[spec] = stamp
    return extra


def output_conflict(f: InputFile, out_root: Path, published: set) -> Optional[str]:
    """Why ``f`` may not be written to its output folder, or None if it may.

    A batch never deletes what it did not write, so it refuses an output
    folder that holds the input itself, or one that exists with files in it
    and is not an earlier result of this batch for this input (its
    ``layers.json`` names this input, or the manifest records it as done).
    """
    key = f.rel.as_posix()
    final = out_root / key
    try:
        f.path.relative_to(final)
    except ValueError:
        pass
    else:
        return (f"its output folder {final} holds the input itself; choose an --out "
                "outside the input's folder")
    if not final.exists() and not final.is_symlink():
        return None
    if not final.is_dir():
        return f"its output path {final} exists and is not a folder"
    try:
        if not any(final.iterdir()):
            return None
    except OSError:
        return f"cannot read its output folder {final}"
    if listed_files(final) is not None:
        if key in published:
            return None
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            doc = json.loads((final / LAYERS_JSON).read_text(encoding="utf-8"))
            if Path(doc["mixture"]).resolve() == f.path:
                return None
    return (f"its output folder {final} already exists and is not an earlier result of "
            "this batch; move it away or choose another --out (nothing was changed)")


def remove_staging(out_root: Path, files: Sequence[InputFile]) -> None:
    """Remove staging folders left for ``files`` (after the workers have stopped)."""
    for f in files:
        for p in staging_folders(out_root / f.rel.as_posix()):
            shutil.rmtree(p, ignore_errors=True)
