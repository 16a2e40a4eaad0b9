"""Trained weights for anyone, one line away: a run's best weights exported as a release
asset with a model card, the registry of released files, and loading them through
torch.hub (``hubconf.py`` at the repository's root has one entry per preset).

An exported file is ``<name>-<first 10 hex digits of its SHA-256>.pt``: a plain state dict
that ``torch.load(..., weights_only=True)`` reads, named the way
``torch.hub.load_state_dict_from_url(..., check_hash=True)`` checks. Nothing is released
until a full run on a GPU has trained it: ``RELEASED`` is empty until then, and asking for
pretrained weights says so, never hands out placeholder weights.
"""
from __future__ import annotations

import hashlib
import pickle
import io
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .experiments import PRESETS, QUEUE, Experiment, run_name
from .models import count_parameters
from .registry import lookup
from .rundir.checkpoint import CheckpointError, read_checkpoint
from .rundir.files import atomic_write
from .rundir.runs import RunDir, SelectionKey, read_json, read_metrics
from .version import RELEASE_TAG, REPO_URL, colabkit_version

URL_ENV = "COLABKIT_WEIGHTS_URL"  # a folder (URL) that holds the files instead of the release
HASH_DIGITS = 10


class WeightsError(RuntimeError):
    """Weights cannot be exported or loaded; the message says what to do."""


@dataclass(frozen=True)
class Release:
    """One released weights file: a release asset of ``tag`` in REPO_URL's releases."""

    file: str                # <name>-<sha256 prefix>.pt, as export() names it
    tag: str = RELEASE_TAG
    num_classes: int = 12    # CIFAR-12
    test_acc: float | None = None

    def url(self) -> str:
        base = os.environ.get(URL_ENV) or f"{REPO_URL}/releases/download/{self.tag}"
        return f"{base.rstrip('/')}/{self.file}"


# name (a preset, with "_fast" for the fast recipe) -> its release. Empty until weights
# trained by a full GPU run are published (docs/releasing.md, "Weights"); export() prints the
# line to add here.
RELEASED: dict[str, Release] = {}


def weights_name(preset: str, recipe: str = "report") -> str:
    """The name weights go by: the preset, with ``_fast`` for the fast recipe."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", run_name(preset, recipe))


def trained_by(preset: str, recipe: str = "report") -> str:
    """What trains a preset: its notebook for the report's four, the CLI for the others."""
    notebooks = {exp: f"notebooks/{run}.ipynb" for run, exp in QUEUE}
    if preset in notebooks:
        return notebooks[preset] + ("" if recipe == "report" else f' (RECIPE = "{recipe}")')
    return f"`python -m colabkit train --experiment {preset} --recipe {recipe}`"


# ---------------------------------------------------------------- export ----

def export(run_dir: str | os.PathLike, out: str | os.PathLike, name: str | None = None) -> dict:
    """Write a run's best weights as ``<out>/<name>-<sha256 prefix>.pt`` and its model card
    ``<out>/<name>.md``; return their paths, the name, the digest and the registry line."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise WeightsError(f"{run.path} is not a run folder (no config.json): give the folder "
                           "a run was trained in")
    if not run.best.exists():
        raise WeightsError(f"{run.path} has no best.pt yet: train at least one epoch, then "
                           "export")
    try:
        state = read_checkpoint(run.best)
    except CheckpointError as e:
        raise WeightsError(f"{e}. Export needs a best.pt that verifies; train on (best.pt is "
                           "rewritten at the next best epoch) or export another run") from e
    cfg = Experiment.from_dict(state["config"])
    name = name or weights_name(cfg.name, cfg.recipe)
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise WeightsError(f"name {name!r}: use letters, digits and _ only (a '-' would "
                           "confuse torch.hub's hash check)")
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state["model"].items()}, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}-{digest[:HASH_DIGITS]}.pt"
    card = out / f"{name}.md"
    with atomic_write(weights) as f:
        f.write(data)
    with atomic_write(card, "w", encoding="utf-8") as f:
        f.write(model_card(run, state, cfg, name, weights.name, digest))
    acc = state.get("test_acc")
    line = f'"{name}": Release("{weights.name}", tag="{RELEASE_TAG}", ' \
           f'num_classes={len(state["classes"])}, test_acc={acc}),'
    return {"name": name, "weights": weights, "card": card, "sha256": digest, "registry": line}


DATA_TERMS = {
    "cifar12": "CIFAR-10 and CIFAR-100 (Krizhevsky, *Learning Multiple Layers of Features from "
               "Tiny Images*, 2009), published by the University of Toronto without a stated "
               "licence; the images were collected from the web. Cite the report above when "
               "you use these weights, and check that your use fits the data's terms.",
    "synthetic": "synthetic images made by colabkit from a seed: no terms beyond colabkit's MIT "
                 "licence.",
    "folder": "your own image folder: its images' licence applies to these weights.",
}
DATA_TERMS["cifar10"] = DATA_TERMS["cifar12"]


def model_card(run: RunDir, state: dict, cfg: Experiment, name: str, file: str,
               digest: str) -> str:
    """The model card: network, recipe, data, epochs, seed, accuracy and how the epoch was
    chosen, environment, the data's terms, and how to load the file."""
    classes = list(state["classes"])
    model = cfg.network(len(classes))
    env = read_json(run.environment, {})
    logged = len(read_metrics(run.metrics))
    chosen = {"val": f"the epoch with the best accuracy on a held-out validation split of "
                     f"{env.get('val_images', cfg.val_size)} training images (the test set "
                     "never chose it)",
              "test": "the epoch with the best test accuracy (the report's way: the test set "
                      "chose it, so the figure is optimistic)"}[SelectionKey.of_checkpoint(state).split]
    tta = f" {state['test_acc_tta']:.3f}% with flip TTA." if state.get("test_acc_tta") is not None else ""
    val = f" Validation accuracy: {state['val_acc']:.3f}%." if state.get("val_acc") is not None else ""
    acc = state.get("test_acc")
    hub_recipe = "" if cfg.recipe == "report" else f', recipe="{cfg.recipe}"'
    size = (f"all {env['train_images']} training images" if cfg.train_size is None and env.get("train_images")
            else f"{env.get('train_images', cfg.train_size)} training images")
    return f"""# {name}

`{file}` — SHA-256 `{digest}`

| | |
|---|---|
| network | `{cfg.model}`, width {cfg.width}, CBAM spatial kernel {cfg.spatial_kernel}: {count_parameters(model):,} parameters |
| recipe | `{cfg.recipe}`: {cfg.epochs} epochs planned, batch {cfg.batch_size}, lr {cfg.lr:g} ({cfg.lr_schedule}), label smoothing {cfg.label_smoothing:g} |
| augmentation | {cfg.augment.describe()} |
| data set | `{cfg.dataset}`, {len(classes)} classes ({", ".join(classes)}); {size}, {env.get('test_images', '?')} test images |
| epochs | {logged} trained; these weights are from epoch {state['epoch']} |
| seed | {cfg.seed} (one run: one seed) |
| test accuracy | {'not logged' if acc is None else f'{acc:.3f}%'} at epoch {state['epoch']}, {chosen}.{tta}{val} |
| environment | colabkit {env.get('colabkit', '?')} ({(env.get('colabkit_commit') or 'commit unknown')[:10]}), torch {env.get('torch', '?')}, Python {env.get('python', '?')}, {' '.join(str(env[k]) for k in ('device', 'gpu') if env.get(k)) or '?'}, {env.get('precision', '?')}, {env.get('world_size', 1)} process(es) |
| exported by | colabkit {colabkit_version()['version']} from the run folder `{run.name}` |

## Data

{DATA_TERMS.get(cfg.dataset, DATA_TERMS['folder'])}

## Use

```python
import torch
model = torch.hub.load("{REPO_URL.removeprefix('https://github.com/')}", "{cfg.name}", pretrained=True{hub_recipe})  # once released
# or from this file:
from colabkit import build_model
model = build_model("{cfg.model}", {len(classes)}, width={cfg.width}, attention_kwargs={{"kernel_size": {cfg.spatial_kernel}}})
model.load_state_dict(torch.load("{file}", weights_only=True))
```

Inputs: 32×32 RGB, scaled to [0, 1], then normalized with the training split's per-channel
mean and standard deviation (`colabkit.load_dataset("{cfg.dataset}").mean` and `.std`).
"""


# ------------------------------------------------------------------ load ----

def hub_model(preset: str, pretrained: bool = False, recipe: str = "report",
              progress: bool = True, num_classes: int | None = None,
              width: int | None = None) -> nn.Module:
    """The network of ``preset`` (for ``num_classes`` classes, 12 by default or the
    released weights'; ``width`` channels at its first stage), with the released weights
    when ``pretrained``. What ``hubconf.py`` calls."""
    exp = lookup(PRESETS, preset, "preset")
    key = weights_name(preset, recipe)
    release = RELEASED.get(key) if pretrained else None
    if pretrained and release is None:
        raise WeightsError(f"no released weights for {key!r} yet: train them with "
                           f"{trained_by(preset, recipe)}, then publish them (docs/releasing.md); "
                           "pretrained=False gives the untrained network")
    if width is not None:
        exp = replace(exp, width=width)
    model = exp.network(num_classes or (release.num_classes if release else 12))
    if release is not None:
        try:  # weights_only: a file that holds a pickled object is refused, never run
            state = torch.hub.load_state_dict_from_url(release.url(), check_hash=True,
                                                       weights_only=True, progress=progress)
        except pickle.UnpicklingError as e:
            raise WeightsError(f"{release.url()} is not a plain weights file (it holds objects "
                               f"that torch.load refuses: {str(e).splitlines()[0][:120]}); "
                               f"do not use it, and tell {REPO_URL}/issues") from e
        model.load_state_dict(state)
    return model


__all__ = ["export", "model_card", "hub_model", "Release", "RELEASED", "WeightsError",
           "weights_name", "trained_by", "URL_ENV"]
