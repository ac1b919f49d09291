"""The ``demixstudio`` command line: the same operations as the GUI, for scripts.

Exit codes: 0 ok, 1 failed (one clear line on stderr), 2 usage error.
A traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from demixstudio import __version__
from demixstudio.errors import Cancelled, DemixError


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit; we want one line and 2
        raise UsageError(f"{self.prog}: {message}")


DEBUG_HELP = "print tracebacks on errors"


class _CommandParser(_Parser):
    """A subcommand's parser: it takes ``--debug`` too, so the option also works after
    the command, where the error line's "run with --debug" leads users to put it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a command given without it keeps a --debug given before the command
        # (argparse copies a subparser's defaults over the main parser's values).
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help=DEBUG_HELP)


# --------------------------------------------------------------------------
# progress on stderr
# --------------------------------------------------------------------------


class StderrProgress:
    """Progress for long work: a live line on a terminal, sparse lines in logs.

    Nothing is printed for work that finishes within ``quiet_s`` seconds, so
    quick commands (and their errors) stay one line.
    """

    def __init__(self, label: str, quiet_s: float = 2.0) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.quiet_s = quiet_s
        self._last_pct = -10

    def __call__(self, p) -> None:
        if p.elapsed_s < self.quiet_s:
            return
        pct = int(p.fraction * 100)
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        text = f"{self.label}: {pct:3d}%{eta} {p.message}".rstrip()
        if self.tty:
            sys.stderr.write("\r" + text[:120].ljust(120))
            sys.stderr.flush()
        elif pct >= self._last_pct + 10:
            self._last_pct = pct
            print(text, file=sys.stderr)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 120 + "\r")
            sys.stderr.flush()


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------


def _sources_arg(text: str):
    """``--sources``: a count, or ``auto`` for methods that find the count themselves."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number or 'auto'") from None


def _parse_sets(items: Sequence[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r} must look like key=value")
        out[key.strip()] = value.strip()
    return out


def _method_options(args: argparse.Namespace) -> Any:
    """The params of ``--method`` from ``--sources``, ``--set`` and ``--device``,
    with every ``--hint`` spec checked for its form (its file is read later).

    What is wrong with the command line itself is a usage error (exit 2), like
    argparse's own: an unknown method, parameter or hint kind, a value out of its
    range, a ``--hint`` that is not ``KIND:TARGET=FILE``. A hint file that is
    missing or unreadable is a failure (exit 1), like a missing mixture.
    """
    from demixstudio.errors import ParameterError
    from demixstudio.separation.hintfiles import parse_hint_spec
    from demixstudio.separation.registry import get_method
    from demixstudio.session.operations import method_params

    where = f"demixstudio {args.command}"
    try:
        get_method(args.method)
    except ParameterError as exc:
        raise UsageError(f"{where}: argument --method: {exc}") from None
    try:
        params = method_params(args.method, sources=args.sources,
                               settings=_parse_sets(args.set), device=args.device)
    except ParameterError as exc:
        raise UsageError(f"{where}: {exc}") from None
    for spec in args.hint:
        try:
            parse_hint_spec(spec)
        except ParameterError as exc:
            raise UsageError(f"{where}: argument --hint: {exc}") from None
    return params


def cmd_separate(args: argparse.Namespace) -> int:
    from demixstudio.audio.io import audio_info, output_format
    from demixstudio.jobs.context import JobContext
    from demixstudio.separation.hintfiles import load_hints
    from demixstudio.session.export import clipping_warning
    from demixstudio.session.operations import (check_device_present, missing_folders,
                                                remove_empty_folders, separate_to_folder)

    params = _method_options(args)
    # Options that would fail only after the output folder is made: refuse them first.
    output_format(f"layer.{args.format}", args.bits)  # e.g. FLAC with float samples
    check_device_present(params)  # e.g. --device cuda on a machine without CUDA
    info = audio_info(args.mix)  # a clear error for a missing or unreadable file, before work
    told: list = []  # a hint recording cut short: used, and said with the run's warnings
    hints = load_hints(args.hint, info.sr, on_warning=told.append) if args.hint else None
    progress = StderrProgress(f"{args.method} {Path(args.mix).name}")
    ctx = JobContext(on_progress=progress)
    made = missing_folders(Path(args.out))
    try:
        doc = separate_to_folder(args.mix, args.method, args.out, params=params, hints=hints,
                                 ctx=ctx, ext=args.format, bits=args.bits,
                                 hint_warnings=told)
    except BaseException:
        # A failed run leaves no empty folder behind: only the folders this
        # command created, and only while they are empty, are removed.
        remove_empty_folders(made)
        raise
    finally:
        progress.done()
    names = ", ".join(x["name"] for x in doc["layers"])
    print(f"{len(doc['layers'])} layers ({names}) written to {args.out} in {doc['elapsed_s']:.2f} s")
    for note in doc.get("notes", []):
        print(f"note: {note}")
    for warning in doc.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    for x in doc["layers"]:
        if "clipped_db" in x:
            print("warning: " + clipping_warning(x["file"], x["clipped_db"],
                                                 "use --bits float to keep it whole"),
                  file=sys.stderr)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from demixstudio.batch import run_batch
    from demixstudio.session.export import clipping_warning

    params = _method_options(args)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers} must be at least 1")
    progress = StderrProgress(f"batch {args.method}")
    try:
        summary = run_batch(args.inputs, args.method, args.out, params=params,
                            hint_specs=args.hint, ext=args.format, bits=args.bits,
                            workers=args.workers, scheduler=args.scheduler,
                            memory_limit=args.memory_limit, on_progress=progress)
    finally:
        progress.done()
    for rec in summary.errors:  # most reasons name the file already: once is enough
        where = "" if rec["input"] in rec["error"] else f"{rec['input']}: "
        print(f"failed: {where}{rec['error']}", file=sys.stderr)
    for rec in summary.records:
        for warning in rec.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
        for name, level in rec.get("clipped_db", {}).items():
            print("warning: " + clipping_warning(f"{rec['output']}/{name}", level,
                                                 "use --format wav --bits float to keep it whole"),
                  file=sys.stderr)
    print(f"{summary.total} files: {summary.ok} separated, {summary.failed} failed, "
          f"{summary.skipped} done before; {summary.elapsed_s:.1f} s; "
          f"manifest {summary.manifest}")
    return 1 if summary.failed else 0


def cmd_methods(args: argparse.Namespace) -> int:
    from demixstudio.separation.base import param_specs
    from demixstudio.separation.registry import available, get_method

    rows = []
    for name in available():
        m = get_method(name)
        rows.append({"name": name, "title": m.title, "summary": m.summary,
                     "channels": {"min": m.min_channels, "max": m.max_channels},
                     "references": list(m.references),
                     "params": [s.as_dict() for s in param_specs(m.Params)]})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']}: {r['title']} — {r['summary']}")
        for p in r["params"]:
            rng = ""
            if p["choices"]:
                rng = " one of " + "|".join(map(str, p["choices"]))
            elif p["min"] is not None or p["max"] is not None:
                rng = f" in [{p['min']}, {p['max']}]"
            kind = f"{p['type']}, advanced" if p["advanced"] else p["type"]
            print(f"    {p['name']} ({kind}, default {p['default']}{rng}): {p['help']}")
        print()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from demixstudio.metrics.evaluate import evaluate_folders

    report = evaluate_folders(Path(args.reference), Path(args.estimates), device=args.device)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'reference':<28} {'estimate':<28} {'SDR':>7} {'SIR':>7} {'SAR':>7} {'ISR':>7}")
    for r in report["sources"]:
        print(f"{r['reference']:<28.28} {r['estimate']:<28.28} {r['sdr']:7.2f} {r['sir']:7.2f} "
              f"{r['sar']:7.2f} {r['isr']:7.2f}")
    print(f"median SDR {report['median_sdr']:.2f} dB over {len(report['sources'])} sources "
          f"({report['elapsed_s']:.2f} s)")
    return 0


def cmd_remix(args: argparse.Namespace) -> int:
    from demixstudio.audio.io import save_audio
    from demixstudio.session.export import (clipped_db, clipping_warning,
                                            refuse_overwriting_the_input)
    from demixstudio.session.project import load_project

    session = load_project(args.project)
    # --out naming the recording the project was made from would replace it.
    refuse_overwriting_the_input(session, [Path(args.out)])
    remix = session.mixdown()
    out = save_audio(args.out, remix, session.sr, bits=args.bits)
    print(f"remix of {len(session.layers)} layers written to {out}")
    level = clipped_db(remix) if args.bits != "float" else None
    if level is not None:
        print("warning: " + clipping_warning("the remix", level,
                                             "lower the gains or use --bits float"),
              file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from demixstudio.separation.dnn import store

    if args.action == "import":
        info = store.import_model(Path(args.path), args.name, overwrite=args.force)
        print(f"imported {info.name}: {info.arch}, targets {', '.join(info.targets)}, "
              f"{info.sample_rate} Hz, {info.nb_channels} ch, sha256 {info.sha256[:12]}…")
        return 0
    if args.action == "remove":
        print(f"removed {store.remove_model(args.name)}")
        return 0
    models = store.list_models()
    if args.json:
        print(json.dumps([m.as_dict() for m in models], indent=2))
    elif not models:
        print(f"no models in {store.models_dir()}; add one with `demixstudio models import PATH` "
              "or `demixstudio train`")
    for m in ([] if args.json else models):
        print(f"{m.name}: {m.arch}, targets {', '.join(m.targets)}, {m.sample_rate} Hz, "
              f"{m.nb_channels} ch ({m.source})")
    return 0


def _parse_hparams(items: Sequence[str]) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for key, text in _parse_sets(items).items():
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from demixstudio.errors import OutputError
    from demixstudio.jobs.context import JobContext
    from demixstudio.separation.dnn import store
    from demixstudio.separation.dnn.train import TrainConfig, train

    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    cfg = TrainConfig(data=Path(args.data), arch=args.arch, targets=targets, out=Path(args.out),
                      epochs=args.epochs, steps_per_epoch=args.steps,
                      batch_size=args.batch_size, chunk_s=args.chunk_s, lr=args.lr,
                      valid_tracks=tuple(args.valid), seed=args.seed, device=args.device,
                      hparams=_parse_hparams(args.set), resume=args.resume,
                      augment=not args.no_augment)
    if args.import_as:
        # Before training, not after hours of it: a bad or taken name is refused now.
        store.check_import_name(args.import_as, overwrite=args.force)
    progress = StderrProgress(f"train {args.arch}")
    try:
        result = train(cfg, JobContext(on_progress=progress),
                       log=lambda msg: print(msg, file=sys.stderr))
    finally:
        progress.done()
    if not result.model_written:
        raise OutputError(f"training ended without writing a model to {result.out} "
                          "(no epoch was scored); see history.json there")
    print(f"best epoch {result.best_epoch}; model written to {result.out}")
    if args.import_as:
        info = store.import_model(result.out, args.import_as, overwrite=args.force)
        print(f"imported into the model store as {info.name}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from demixstudio.audio.io import save_audio
    from demixstudio.demo import demo_mixture
    from demixstudio.separation.base import LayerProposal
    from demixstudio.session.operations import prepare_folder
    from demixstudio.session.project import save_project
    from demixstudio.session.session import Session

    out = Path(args.out)
    prepare_folder(out)
    mix, stems = demo_mixture(sr=44100, seconds=args.seconds)
    mix_path = save_audio(out / "demo.wav", mix, 44100)
    ref = out / "reference"
    prepare_folder(ref)
    for name, audio in stems.items():
        save_audio(ref / f"{name}.wav", audio, 44100)
    # The reference stems as layers of a project: open it, remix it, export it.
    session = Session(mix, 44100, name="demo", source_path=str(mix_path))
    session.apply_proposals([LayerProposal(name, "reference", {}, waveform=a)
                             for name, a in stems.items()])
    proj = save_project(session, out / "demo.dsproj")
    print(f"demo mixture: {mix_path} ({mix.shape[1] / 44100:.1f} s, stereo, "
          f"{', '.join(stems)} panned across the field)")
    print(f"reference stems: {ref}/")
    print(f"project with the stems as layers: {proj}")
    print("try:")
    print(f"  demixstudio remix {proj} --out {out / 'remix.wav'}")
    print(f"  demixstudio separate {mix_path} --method ica --out {out / 'ica'}")
    print("  demixstudio methods")
    return 0


def gui_main() -> int:
    """The GUI script's entry point."""
    try:
        from demixstudio.gui.app import main as gui
    except ImportError as exc:
        print(f"demixstudio: the editor window is not available in this build ({exc}); "
              "use the command line: demixstudio --help", file=sys.stderr)
        return 1
    return gui(sys.argv[1:])


def cmd_gui(args: argparse.Namespace) -> int:
    sys.argv = [sys.argv[0], *([args.file] if args.file else [])]
    return gui_main()


# --------------------------------------------------------------------------
# parser and main
# --------------------------------------------------------------------------


def _add_method_options(s: argparse.ArgumentParser, *, default_format: str) -> None:
    """The method options shared by ``separate`` and ``batch``."""
    s.add_argument("--method", required=True, help="a method name (see `demixstudio methods`)")
    s.add_argument("--sources", type=_sources_arg,
                   help="number of sources, for methods that take it; 'auto' lets methods "
                        "that can count them (duet, adress) do so")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a method parameter (repeatable)")
    s.add_argument("--hint", action="append", default=[], metavar="KIND:TARGET=FILE",
                   help="example:TARGET=FILE, hum:TARGET=FILE or paint:TARGET=FILE (repeatable)")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    s.add_argument("--out", required=True, help="output folder (created if missing)")
    s.add_argument("--format", default=default_format, choices=("wav", "flac"))
    s.add_argument("--bits", default="24", choices=("16", "24", "float"))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="demixstudio", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"demixstudio {__version__}")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

    s = sub.add_parser("separate", help="separate a file into layers")
    s.add_argument("mix", help="the mixture (any format libsndfile reads)")
    _add_method_options(s, default_format="wav")
    s.set_defaults(func=cmd_separate)

    b = sub.add_parser("batch", help="separate many files (folders, lists) on local workers "
                                     "or a Dask cluster")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders (searched recursively) or .txt lists of paths")
    _add_method_options(b, default_format="flac")
    b.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: one per CPU)")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    b.add_argument("--memory-limit", default="auto", metavar="SIZE",
                   help="memory per local worker, e.g. 4GB (default: an equal share of RAM; "
                        "'none' for no limit)")
    b.set_defaults(func=cmd_batch)

    m = sub.add_parser("methods", help="list the methods and their parameters")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_methods)

    e = sub.add_parser("eval", help="BSS Eval SDR/SIR/SAR/ISR of estimates against references")
    e.add_argument("--reference", required=True, help="folder of reference source images")
    e.add_argument("--estimates", required=True, help="folder of estimates (e.g. a separate --out)")
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("remix", help="render a project's remix to a file")
    r.add_argument("project")
    r.add_argument("--out", required=True)
    r.add_argument("--bits", default="24", choices=("16", "24", "float"))
    r.set_defaults(func=cmd_remix)

    d = sub.add_parser("demo", help="write the built-in demo mixture, its stems and a project")
    d.add_argument("--out", default="demixstudio-demo")
    d.add_argument("--seconds", type=float, default=12.0)
    d.set_defaults(func=cmd_demo)

    mo = sub.add_parser("models", help="list, import or remove stem-separation models")
    mo_sub = mo.add_subparsers(dest="action", metavar="ACTION", parser_class=_CommandParser)
    mo_list = mo_sub.add_parser("list", help="the models in the store")
    mo_list.add_argument("--json", action="store_true")
    mo_imp = mo_sub.add_parser("import", help="validate a checkpoint and add it to the store")
    mo_imp.add_argument("path", help="a `train --out` folder, or Open-Unmix <target>.pth/.json files")
    mo_imp.add_argument("--name", help="name in the store (default: the folder or file name)")
    mo_imp.add_argument("--force", action="store_true", help="replace a model of the same name")
    mo_rm = mo_sub.add_parser("remove", help="delete a model from the store")
    mo_rm.add_argument("name")
    mo.set_defaults(func=cmd_models, action="list", json=False)

    t = sub.add_parser("train", help="train a stem-separation model on a folder of stems")
    t.add_argument("--data", required=True, help="one folder per track, one audio file per stem")
    t.add_argument("--arch", required=True, choices=("mmdensenet", "umx", "waveunet"))
    t.add_argument("--targets", default="vocals,drums,bass,other",
                   help="comma-separated stem names to learn")
    t.add_argument("--out", required=True, help="folder for the model, checkpoint and history")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--chunk-s", type=float, default=3.0, help="seconds per training example")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--valid", action="append", default=[], metavar="TRACK",
                   help="hold this track out for validation (default: the last one)")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model hyper-parameter, e.g. hidden_size=256 or n_fft=1024")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--no-augment", action="store_true", help="no random gains or channel swaps")
    t.add_argument("--import-as", metavar="NAME", help="add the best model to the store")
    t.add_argument("--force", action="store_true",
                   help="with --import-as: replace a store model of the same name")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("gui", help="open the editor window")
    g.add_argument("file", nargs="?")
    g.set_defaults(func=cmd_gui)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        if not getattr(args, "func", None):
            build_parser().print_help(sys.stderr)
            return 2
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Cancelled:
        print("demixstudio: cancelled", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demixstudio: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`demixstudio methods | head`): not an error of ours.
        # Point stdout at nothing so the flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except DemixError as exc:
        if debug:
            traceback.print_exc()
        print(f"demixstudio: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("demixstudio: error: out of memory; try a shorter file or a lighter method",
              file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one clear line
        if debug:
            traceback.print_exc()
        print(f"demixstudio: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
