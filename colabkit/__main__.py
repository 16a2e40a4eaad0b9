"""Command line: ``python -m colabkit {info,demo,train,sweep,report,inspect,export}``. Flags map onto the
``Experiment`` dataclass and the package's functions; no logic of its own beyond saying
errors in the words of the command line: one line, naming the flag, exit status 2."""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import warnings
from pathlib import Path

# what every command needs (and torch, which each needs) at the top; what only some commands
# need (the report's pandas, matplotlib and SciPy; the queue) inside them, so that a
# `train` process, a sweep's child or a torchrun worker does not load it
from .colab.device import PRECISIONS, DeviceError, check_gpu
from .colab.drive import DriveError
from .colab.lease import LeaseHeld, LeaseLost
from .data.archives import DataError
from .data.sources import SOURCES
from .experiments import DEFAULT_IF_ZERO, FIELDS, PRESETS, RECIPES, get_experiment
from .models import count_parameters
from .registry import Advice, setting
from .rundir.checkpoint import CheckpointError
from .rundir.runs import RunFolderError
from .training.loop import train
from .training.resume import ConfigMismatch
from .version import __version__
from .weights import WeightsError, export

DESCRIPTION = ("colabkit: train the report's ResNet18 / CBAM / ASPP models on CIFAR-12, "
               "resumably, and redraw its figures from the run folders.")


class UsageError(Exception):
    """A command-line mistake found by argparse."""

class _Parser(argparse.ArgumentParser):
    """argparse's parser, saying a mistake in one line, that keeps what the command line
    reads back through argparse's public calls alone: its long flags (``flags``), its
    subcommands (``commands``) and each one's line of help (``summary``). argparse holds
    them only in private attributes, which a new Python may change without a word."""

    def __init__(self, *args, **kwargs):
        self.flags: list[str] = []  # before argparse's __init__ adds --help through add_argument
        self.commands: dict[str, _Parser] = {}
        self.summary = ""
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, not usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        return self.known(super().add_argument(*args, **kwargs))

    def known(self, action: argparse.Action) -> argparse.Action:
        """Note ``action``'s long flags as this parser's."""
        self.flags += [o for o in action.option_strings if o.startswith("--")]
        return action

    def add_command(self, subparsers, name: str, help: str) -> "_Parser":
        """``subparsers.add_parser(name)``, kept in ``commands`` with its line of help."""
        command = subparsers.add_parser(name, help=help)
        command.summary = help
        self.commands[name] = command
        return command


class _Group:
    """An argument group that keeps the actions it is given (``actions``) and gives their
    flags to its parser (argparse's group keeps them in a private attribute)."""

    def __init__(self, parser: _Parser, title: str, description: str):
        self.parser, self.actions = parser, []
        self.group = parser.add_argument_group(title, description)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = self.parser.known(self.group.add_argument(*args, **kwargs))
        self.actions.append(action)
        return action


def _number(kind, low, strict=False):
    """An argparse type: ``kind`` (int or float) >= low (> low when strict)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number")
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        return value
    return parse


def _milestones(text):
    try:
        return tuple(int(m) for m in text.split(",") if m.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of epochs, "
                                         "e.g. 100,200")


def _parser() -> _Parser:
    pos_int = _number(int, 1)
    p = _Parser(prog="python -m colabkit", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)

    p.add_command(sub, "info", help="versions, device, precision, experiments")

    d = p.add_command(sub, "demo", help="a short end-to-end run on synthetic data, then the report")
    d.add_argument("--home", default="colabkit-home", help="folder for runs and the report")
    d.add_argument("--epochs", type=pos_int, default=4)
    d.add_argument("--device", choices=("cpu", "cuda"), default=None)
    d.add_argument("--width", type=pos_int, default=16, help="ResNet base width (64 in the report)")
    d.add_argument("--train-size", type=pos_int, default=2400)
    d.add_argument("--test-size", type=pos_int, default=600)

    t = p.add_command(sub, "train", help="train (or resume) one run")
    t.add_argument("--experiment", required=True, choices=sorted(PRESETS))
    t.add_argument("--run-dir", required=True)
    t.add_argument("--seed", type=_number(int, 0))
    t.add_argument("--json", action="store_true",
                   help="end with the results as JSON instead of one summary line")
    _run_flags(t)

    w = p.add_command(sub, "sweep", help="train every (experiment, seed), one after another")
    w.add_argument("--experiments", nargs="+", required=True, choices=sorted(PRESETS), metavar="E")
    w.add_argument("--seeds", nargs="+", type=_number(int, 0), required=True, metavar="S")
    w.add_argument("--runs-dir", required=True, help="runs go to RUNS_DIR/<experiment>-s<seed>")
    w.add_argument("--parallel", type=pos_int, default=1,
                   help="runs at once, each in its own process (one per GPU where there are several)")
    _run_flags(w)

    r = p.add_command(sub, "report", help="figures and Table 1 from run folders")
    r.add_argument("runs_dir")
    r.add_argument("--out", required=True)
    r.add_argument("--confusion", action="store_true",
                   help="also per-class accuracy and confusion matrices (needs the test data)")
    r.add_argument("--inspect", action="store_true",
                   help="also inspect every run with a checkpoint (attention, robustness, cost, "
                        "mistakes; needs the test data)")
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.add_argument("--data-root", default="data",
                   help="where the test data is, for --confusion and --inspect (as for train)")

    i = p.add_command(sub, "inspect", help="look inside one trained run: attention, robustness, "
                                           "cost, mistakes")
    i.add_argument("run_dir")
    i.add_argument("--out", required=True)
    i.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    i.add_argument("--images", type=pos_int, help="use a seeded subset of N test images")
    i.add_argument("--data-root", default="data", help="where the run's data is (as for train)")

    x = p.add_command(sub, "export", help="a run's best weights as <name>-<sha256>.pt, with a "
                                          "model card <name>.md (for a release, docs/releasing.md)")
    x.add_argument("run_dir")
    x.add_argument("--out", required=True)
    x.add_argument("--name", help="default: the preset, with _fast for the fast recipe")

    b = p.add_command(sub, "tensorboard", help="TensorBoard event files for run folders that "
                                              "have only metrics.csv (older runs, logs/)")
    b.add_argument("runs_dir", help="a folder of run folders, at any depth")
    return p


# The Experiment fields that train and sweep set, each as its flag (the field's name with
# dashes, ``registry.setting``), with its argparse type and help; the seed is train's own.
# 0 means the recipe's value for DEFAULT_IF_ZERO, as EPOCHS = 0 in a notebook.
_RECIPES_VALUE = _number(int, 0)
EXPERIMENT_FLAGS = {
    "dataset": dict(choices=SOURCES, help="default: the experiment's (cifar12)"),
    "epochs": dict(type=_RECIPES_VALUE, help="default (or 0): the recipe's, 300 or 30"),
    "batch_size": dict(type=_RECIPES_VALUE, help="the global batch (128; fast: 256)"),
    "lr": dict(type=_number(float, 0, strict=True), help="initial learning rate (0.1)"),
    "milestones": dict(type=_milestones,
                       help="epochs after which the lr drops, e.g. 100,200 (default: at a third "
                            "and two thirds of --epochs: 100,200 for 300)"),
    "width": dict(type=_number(int, 1), help="ResNet base width (64 in the report)"),
    "train_size": dict(type=_RECIPES_VALUE,
                       help="seeded random subset of the training split (0: all of it)"),
    "test_size": dict(type=_RECIPES_VALUE, help="seeded random subset of the test split (0: all)"),
    "val_size": dict(type=_RECIPES_VALUE,
                     help="hold out N training images (stratified, seeded) to choose the best "
                          "epoch on, instead of the test set"),
}
assert set(EXPERIMENT_FLAGS) <= set(FIELDS) and set(DEFAULT_IF_ZERO) <= set(EXPERIMENT_FLAGS)


def _run_flags(t: _Parser) -> None:
    """The flags train and sweep share, in one argument group, which ``_child_args``
    reads back (``args.run_flags``)."""
    g = _Group(t, "run", "how the run is trained (train and sweep alike)")
    g.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="how the network is trained: 'report' (default: SGD 0.1, steps at a "
                        "third and two thirds, batch 128, 300 epochs) or 'fast' (Nesterov, "
                        "batch 256, warm-up then linear decay, label smoothing, translate and "
                        "cutout, flip TTA, 30 epochs); flags below override either")
    for field, kwargs in EXPERIMENT_FLAGS.items():
        g.add_argument(setting(field)[1], dest=field, **kwargs)
    g.add_argument("--data-root", default="data",
                   help="where CIFAR archives are downloaded or found; for 'folder', the tree "
                        "holding train/ and test/ (or a .tar.gz of it)")
    pos_minutes = _number(float, 0, strict=True)
    g.add_argument("--max-minutes", type=pos_minutes,
                   help="stop after the last epoch that fits, counted from the start")
    g.add_argument("--checkpoint-minutes", type=pos_minutes,
                   help="checkpoint every N minutes instead of every epoch")
    g.add_argument("--mirror-minutes", type=_number(float, 0), default=10.0,
                   help="a run folder on Google Drive (or $COLABKIT_DRIVE) is trained in a local "
                        "working copy and copied to Drive every M minutes (0: every "
                        "checkpoint) and at every stop; default 10")
    g.add_argument("--takeover", action="store_true",
                   help="train although another trainer holds the run folder's lease (it stops)")
    g.add_argument("--device", choices=("cpu", "cuda"), default=None)
    g.add_argument("--precision", choices=PRECISIONS, default="auto")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--allow-config-change", action="store_true",
                   help="continue a run although its saved configuration differs")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(run_flags=list(g.actions))


def _child_args(args) -> list[str]:
    """The run flags given to ``sweep``, as a child ``train`` process takes them (the
    data root is passed by ``sweep`` itself)."""
    out = []
    for action in args.run_flags:
        value, flag = getattr(args, action.dest), action.option_strings[0]
        if action.dest == "data_root" or value is None or value is False:
            continue
        out += [flag] if value is True else [
            flag, ",".join(map(str, value)) if action.dest == "milestones" else str(value)]
    return out


def cmd_info(args) -> int:
    print(f"colabkit {__version__}")
    check_gpu(allow_cpu=True)
    print("\nexperiments:")
    for name, exp in PRESETS.items():
        n = count_parameters(exp.network(12))
        print(f"  {name:13s} {exp.model:19s} {n:>11,} params  augment: {exp.augment.describe()}")
    return 0


def _overrides(args) -> dict:
    """The Experiment fields given on the command line (train's seed among them)."""
    return {k: v for k in (*EXPERIMENT_FLAGS, "seed") if (v := getattr(args, k, None)) is not None}


def _train_kwargs(args) -> dict:
    return dict(device=args.device, precision=args.precision, compile=args.compile,
                max_minutes=args.max_minutes, checkpoint_minutes=args.checkpoint_minutes,
                mirror_minutes=args.mirror_minutes, takeover=args.takeover,
                progress=not args.quiet, allow_config_change=args.allow_config_change)


def summary_line(res: dict) -> str:
    """What a run came to, in one line."""
    best = ("no finished epoch" if res.get("best_acc") is None else
            f"best test accuracy {res['best_acc']:.2f}% ({res['accuracy']}) at epoch "
            f"{res['best_epoch']}, chosen on {res['selected_on']}")
    return (f"{res['run_dir']}: {res['status']}, {res['epochs_done']}/{res['epochs']} epochs, "
            f"{best}; {res['train_seconds'] / 60:.1f} min of training")


def cmd_train(args) -> int:
    exp = get_experiment(args.experiment, args.recipe or "report", **_overrides(args))
    res = train(exp, args.run_dir, data_root=args.data_root, **_train_kwargs(args))
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {k: v for k, v in res.items() if k != "history"}
        print(json.dumps(summary, indent=2) if args.json else summary_line(res))
    return 130 if res["status"] == "interrupted" else 0


def cmd_sweep(args) -> int:
    from .sweeps import sweep

    results = sweep(args.experiments, args.seeds, args.runs_dir, parallel=args.parallel,
                    data_root=args.data_root, cli_args=_child_args(args),
                    recipe=args.recipe or "report", **_overrides(args), **_train_kwargs(args))
    for r in results:
        best = "-" if r.get("best_acc") is None else f"{r['best_acc']:.2f}% at epoch {r['best_epoch']}"
        print(f"{r['run_dir']}: {r['status']}, best test accuracy {best}")
    failed = [r for r in results if r["status"] not in ("finished", "budget")]
    return 130 if any(r["status"] == "interrupted" for r in failed) else (2 if failed else 0)


def cmd_report(args) -> int:
    from .report.status import status_table
    from .report.write import write_report

    written = write_report(args.runs_dir, args.out, confusion=args.confusion,
                           inspect=args.inspect, data_root=args.data_root, device=args.device)
    print(status_table(args.runs_dir).to_string(index=False), end="\n\n")
    print(Path(args.out, "table1.md").read_text(encoding="utf-8"))
    print("wrote", ", ".join(str(p) for paths in written.values() for p in paths))
    return 0


def cmd_tensorboard(args) -> int:
    from .rundir.events import write_tensorboard

    try:
        written = write_tensorboard(args.runs_dir)
    except (ImportError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not written:
        print(f"error: no run folder with a metrics.csv under {args.runs_dir}: name the folder "
              "that holds the run folders", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} event file(s) under {args.runs_dir}, one per run folder with a "
          f"metrics.csv. View them: tensorboard --logdir {args.runs_dir}")
    return 0


def cmd_inspect(args) -> int:
    from .report.inspection import inspect_run

    written = inspect_run(args.run_dir, args.out, device=args.device, images=args.images,
                          data_root=args.data_root)
    print("wrote", ", ".join(str(p) for paths in written.values() for p in paths))
    return 0


def cmd_export(args) -> int:
    done = export(args.run_dir, args.out, args.name)
    print(f"wrote {done['weights']} and {done['card']}")
    print(f"sha256 {done['sha256']}")
    print("to release it: attach both files to the release, then add to RELEASED in "
          f"colabkit/weights.py:\n    {done['registry']}")
    return 0


def cmd_demo(args) -> int:
    """Two small models on synthetic data (a few minutes on 2 CPU cores), then the report."""
    from .report.write import write_report

    home = Path(args.home)
    for name in ("basic", "da_cbam"):
        exp = get_experiment(name, dataset="synthetic", epochs=args.epochs, width=args.width,
                             milestones=(3,), train_size=args.train_size,
                             test_size=args.test_size)
        res = train(exp, home / "runs" / f"demo_{name}", device=args.device)
        print(f"{name}: best test accuracy {res['best_acc']:.2f}% at epoch {res['best_epoch']}")
    write_report(home / "runs", home / "report")
    print((home / "report" / "table1.md").read_text(encoding="utf-8"))
    print(f"Figures and table in {home / 'report'}")
    return 0


def _known_flags(parser: _Parser, argv: list[str]) -> list[str]:
    """``argv`` with underscore spellings of flags taken as the dashed ones (``--run_dir``),
    or a ``UsageError`` naming an unknown flag and the closest known one, before argparse
    would complain of a missing flag instead."""
    command = next((a for a in argv if not a.startswith("-")), None)
    target = parser.commands.get(command) if command else None
    if target is None:
        return argv
    known = target.flags
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if flag.startswith("--") and flag != "--" and flag not in known:
            dashed = flag.replace("_", "-")
            if dashed in known:
                arg = dashed + eq + value
            else:
                close = difflib.get_close_matches(dashed, known, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise UsageError(f"{command}: unknown flag {flag}{hint} (see {target.prog} --help)")
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        parser = _parser()
        args = parser.parse_args(_known_flags(parser, sys.argv[1:] if argv is None else list(argv)))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # warnings as one line each
    warnings.showwarning = lambda msg, *a, **k: print("warning: " + " ".join(str(msg).split()),
                                                      file=sys.stderr)
    try:
        return {"info": cmd_info, "train": cmd_train, "sweep": cmd_sweep, "report": cmd_report,
                "inspect": cmd_inspect, "demo": cmd_demo, "export": cmd_export,
                "tensorboard": cmd_tensorboard}[args.command](args)
    # the report's ReportError and InspectionError are ValueErrors
    except (ConfigMismatch, DataError, CheckpointError, RunFolderError, DeviceError, LeaseHeld,
            LeaseLost, DriveError, WeightsError, PermissionError, ValueError) as e:  # says what to do
        text = e.cli() if isinstance(e, Advice) else str(e)  # the flag, not the keyword
        print("error: " + " ".join(text.split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM outside the epochs (setup, or the stop)
        print("Interrupted: every finished epoch's checkpoint is in the run folder, and the lease "
              "is let go. Run the same command again to continue.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
