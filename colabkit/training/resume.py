"""Whether a run folder's checkpoint may continue as this experiment: the configuration it
was trained with, the schedule its epochs were trained on, and the runs beside it. Refusals
are ``ConfigMismatch`` with one line saying what to do; nothing here writes."""
from __future__ import annotations

from ..experiments import Experiment
from ..registry import Advice, setting
from ..rundir.runs import RunDir, find_runs, read_json, read_metrics

CHECKPOINT_FORMAT = 1


class ConfigMismatch(Advice, ValueError):
    """The run folder holds a run of another configuration; the message says what to do,
    naming the keyword (``str``) or the flag (``cli()``)."""


_ALLOW = ("allow_config_change=True", "--allow-config-change")


# Fields whose change makes a checkpoint's weights unusable: refused even when asked.
# A run of another recipe never continues this one: its folder name differs too.
SHAPE_FIELDS = ("model", "width", "spatial_kernel", "dataset", "recipe")


def check_config(state: dict | None, exp: Experiment, run: RunDir,
                 allow_change: bool, main: bool) -> list[dict]:
    """Refuse a configuration the run folder's checkpoint was not trained with. Before
    the first finished epoch there is nothing to protect: a new configuration is taken.
    Returns the run's schedule changes (``schedule_changes`` of the checkpoint), with this
    one added when a change of length moved the schedule as asked."""
    if state is None:
        if main and (others := _siblings(run.path, exp)):
            print(f"{run.path} has no checkpoint yet, but beside it {others}. This starts a new "
                  "run; to continue one of those instead, choose its recipe and length (in a "
                  "notebook RECIPE and EPOCHS, in a terminal its --run-dir).")
        if main and run.config.exists():
            try:
                old = Experiment.from_dict(read_json(run.config))
            except (OSError, ValueError):
                old = None
            if old is not None and old.diff(exp):
                print(f"{run.path} has no finished epoch yet: starting it with the new "
                      f"configuration ({', '.join(old.diff(exp))}).")
        return []
    if state.get("format") != CHECKPOINT_FORMAT or "config" not in state:
        raise ConfigMismatch(f"{run.path} holds a checkpoint of another format "
                             f"({state.get('format')!r}, this colabkit writes "
                             f"{CHECKPOINT_FORMAT}): train in a new run folder.")
    saved = Experiment.from_dict(state["config"])
    trained = len(state.get("history", []))
    changes = list(state.get("schedule_changes", []))
    diff = {k: v for k, v in saved.diff(exp).items() if k != "epochs"}
    if diff:
        lines = tuple("; ".join(f"{setting(k)[i]}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
                      for i in (0, 1))
        fixed = [k for k in diff if k in SHAPE_FIELDS]
        if fixed:
            raise ConfigMismatch(lambda changed: f"{run.path} holds a run with another "
                                 f"{', '.join(fixed)} ({changed}), whose checkpoint cannot "
                                 "continue as this one: train in a new run folder.", changed=lines)
        if not allow_change:
            raise ConfigMismatch(
                lambda changed, allow: f"{run.path} holds a run with another configuration "
                f"({changed}). Use a new run folder, or pass {allow} to continue this run with "
                "the new values.", changed=lines, allow=_ALLOW)
    if saved.epochs != exp.epochs and trained < exp.epochs and \
            _check_length(saved, exp, trained, run.path, allow_change, main):
        changes.append({"after_epoch": trained, "epochs": [saved.epochs, exp.epochs]})
    return changes


def _siblings(path, exp: Experiment) -> str:
    """The folders beside ``path`` that hold a run of the same experiment with a
    checkpoint (another recipe or length), said in a few words (three at most); '' if none."""
    found = []
    for other in find_runs(path.parent) if path.parent.is_dir() else []:
        if other.path.name == path.name or not other.has_checkpoint():
            continue
        try:
            cfg = Experiment.from_dict(read_json(other.config))
        except (OSError, ValueError, TypeError):
            continue
        if cfg.name == exp.name:
            done = len(read_metrics(other.metrics))
            found.append(f"{other.name} holds {cfg.name} by the {cfg.recipe} recipe, "
                         f"{done}/{cfg.epochs} epochs")
    more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
    return "; ".join(found[:3]) + more


def _check_length(saved: Experiment, exp: Experiment, trained: int, path, allow_change: bool,
                  main: bool) -> bool:
    """A run planned for one length may continue for another only where the epochs already
    trained had the learning rates the new plan gives them (explicit milestones, or steps
    still ahead). Otherwise its schedule would move under them: refused, unless asked, and
    then the run's log shows it (Table 1 marks it ``schedule changed``)."""
    moved = saved.schedule_moved(exp, trained)
    if moved is None:
        return False
    what = (f"{path} was planned for {saved.epochs} epochs and has trained {trained}; "
            f"{exp.epochs} epochs would move its learning-rate schedule under them (epoch "
            f"{moved} trained at lr {saved.lr_at(moved):g}, the {exp.epochs}-epoch plan gives "
            f"{exp.lr_at(moved):g})")
    if not allow_change:
        raise ConfigMismatch(
            lambda keep, allow: f"{what}. Train {exp.epochs} epochs in a new run folder (a "
            f"notebook's run name changes with EPOCHS by itself), keep {keep} to finish this "
            f"run, or pass {allow} to continue it on the moved schedule, marked 'schedule "
            "changed' in Table 1.", keep=setting("epochs", saved.epochs), allow=_ALLOW)
    if main:
        print(f"Note: {what}; continuing as asked. Table 1 marks this run "
              "'schedule changed'.")
    return True


def version_note(state: dict, now: dict) -> str | None:
    """A warning when a run continues under another colabkit than it was trained with."""
    then = state.get("colabkit") or {"version": "0.1.0 or earlier", "commit": None}
    if (then.get("version"), then.get("commit")) == (now["version"], now["commit"]):
        return None
    name = lambda v: f"{v.get('version')}" + (f" ({v['commit'][:10]})" if v.get("commit") else "")
    return (f"this run was trained with colabkit {name(then)} and continues with colabkit "
            f"{name(now)}: results may differ from an uninterrupted run. Pin the version "
            "(REF in the notebook's setup cell) to keep a run on one version.")
