"""The ``Experiment`` config and the report's four presets.

Source: the report "Experiment 2: Training Deep Neural Networks for CIFAR10" (models 1-4,
its Table 1 and learning-rate schedule). Values the report does not state are the usual
CIFAR ResNet18 choices and are marked ASSUMED below.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from torch import nn

from .data.augment import AugmentSpec
from .models import build_model
from .registry import SettingError, check_keys, lookup, setting


@dataclass(frozen=True)
class Experiment:
    """Everything that decides a run's result. Saved in every run folder and checkpoint;
    a run is resumed only with the same values (``epochs`` may change: that extends or
    shortens a run without altering finished epochs)."""

    name: str
    model: str = "resnet18"            # report: ResNet18 (+ CBAM, + ASPP)
    dataset: str = "cifar12"           # report: CIFAR-10 + CIFAR-100 fish, flowers
    augment: AugmentSpec = field(default_factory=lambda: AugmentSpec(hflip=0.5))
    epochs: int = 300                  # report
    batch_size: int = 128              # ASSUMED (global batch, split across DDP ranks)
    lr: float = 0.1                    # report
    # report: 0.1 / 0.01 / 0.001 after epochs 100 and 200 of 300. None: the same steps at a
    # third and two thirds of the run, so a 30-epoch trial steps at 10 and 20
    milestones: tuple[int, ...] | None = None
    gamma: float = 0.1                 # report
    momentum: float = 0.9              # ASSUMED
    weight_decay: float = 5e-4         # ASSUMED
    nesterov: bool = False             # ASSUMED
    width: int = 64                    # ResNet18's base width; smaller only for smoke runs
    spatial_kernel: int = 3            # report's CBAM spatial conv (the paper's is 7)
    seed: int = 0
    train_size: int | None = None      # None = the whole split; else a seeded subset
    test_size: int | None = None
    # a stratified, seeded hold-out from the training split: best epoch and best.pt are
    # then chosen on it, not on the test set (None: the report's way, on the test set)
    val_size: int | None = None
    # how the network is trained, never which network (RECIPES): "report" or "fast"
    recipe: str = "report"
    # lr_schedule "step": lr * gamma ** (milestones passed), set once per epoch (the report);
    # "triangle": a linear rise over the first ``warmup`` of the run, then a linear fall to
    # 0 at its end, set at every step
    lr_schedule: str = "step"
    warmup: float = 0.0
    label_smoothing: float = 0.0       # of the training loss (Szegedy et al., 2016)
    tta: bool = False                  # also evaluate with horizontal-flip test-time augmentation

    def __post_init__(self):
        object.__setattr__(self, "augment", AugmentSpec.from_dict(self.augment))
        if self.milestones is not None:
            object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        for key in ("epochs", "batch_size", "width", "train_size", "test_size", "val_size"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SettingError(lambda field: f"{field} must be a whole number >= 1, got "
                                   f"{value!r}", field=setting(key))
        if not self.lr > 0:
            raise SettingError(lambda lr: f"{lr} must be > 0, got {self.lr!r}", lr=setting("lr"))
        if self.milestones is not None and (list(self.milestones) != sorted(set(self.milestones))
                                            or min(self.milestones, default=1) < 1):
            raise SettingError(lambda milestones: f"{milestones} must be increasing epochs >= 1, "
                               f"got {list(self.milestones)}", milestones=setting("milestones"))
        lookup(RECIPES, self.recipe, "recipe")
        lookup(LR_SCHEDULES, self.lr_schedule, "lr_schedule")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must be a fraction of the run in [0, 1), got {self.warmup!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")

    @property
    def schedule(self) -> tuple[int, ...]:
        """The epochs after which the learning rate drops: ``milestones``, or the report's
        (100, 200 of 300) scaled to the run's length."""
        if self.milestones is not None:
            return self.milestones
        thirds = (round(self.epochs / 3), round(2 * self.epochs / 3))
        return tuple(sorted({m for m in thirds if 1 <= m < self.epochs}))

    def lr_at(self, epoch: int, done: float = 0.0) -> float:
        """Learning rate of (1-based) ``epoch`` when the fraction ``done`` of its steps is
        behind: a pure function, so nothing to save.

        ``step`` schedule (the report): constant within an epoch; with milestones (100,
        200): 0.1 for epochs 1-100, 0.01 for 101-200, then 0.001.
        ``triangle``: with t = (epoch - 1 + done) / epochs the fraction of the run behind,
        lr * t / warmup while t < warmup, then lr * (1 - t) / (1 - warmup): 0 at the end."""
        if self.lr_schedule == "step":
            return self.lr * self.gamma ** sum(epoch > m for m in self.schedule)
        t = (epoch - 1 + done) / self.epochs
        if t < self.warmup:
            return self.lr * t / self.warmup
        return self.lr * max(0.0, 1.0 - t) / (1.0 - self.warmup)

    def schedule_moved(self, other: "Experiment", epochs: int) -> int | None:
        """The first of epochs 1..``epochs`` that ``other`` trains at another learning rate
        than this plan (per-step schedules compared mid-epoch too), or None: the epochs
        already trained are exactly what either plan gives them."""
        for epoch in range(1, epochs + 1):
            for done in (0.0, 0.5):
                if not math.isclose(self.lr_at(epoch, done), other.lr_at(epoch, done),
                                    rel_tol=1e-9, abs_tol=1e-12):
                    return epoch
        return None

    def off_schedule(self, history: list[dict]) -> int | None:
        """The first logged epoch whose learning rate is not this plan's (a run continued
        with another length or schedule by ``allow_config_change``), or None."""
        for row in history:
            lr = row.get("lr")
            if lr is not None and not math.isclose(lr, self.lr_at(int(row["epoch"])),
                                                   rel_tol=1e-9, abs_tol=1e-12):
                return int(row["epoch"])
        return None

    def network(self, num_classes: int) -> nn.Module:
        """This run's network, untrained: the one place a run's model is built (training,
        the report, inspection and exported weights all call it)."""
        return build_model(self.model, num_classes, width=self.width,
                           attention_kwargs={"kernel_size": self.spatial_kernel})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        d["milestones"] = None if self.milestones is None else list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Experiment":
        check_keys(d, FIELDS, "Experiment field")
        return cls(**d)

    def diff(self, other: "Experiment") -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ: {field: (self's, other's)}."""
        a, b = self.to_dict(), other.to_dict()
        out = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
        if "milestones" in out and self.schedule == other.schedule:
            del out["milestones"]  # the same steps, given explicitly on one side
        return out


LR_SCHEDULES = ("step", "triangle")
FIELDS = tuple(f.name for f in fields(Experiment))


def _report(exp: "Experiment") -> "Experiment":
    """The report's recipe: the preset as it is (SGD 0.1 with steps at a third and two
    thirds, batch 128, 300 epochs, the preset's augmentation)."""
    return replace(exp, recipe="report")


# The fast recipe (docs/recipes.md; evidence in logs/recipes): what public fast CIFAR ResNet
# recipes share (Keller Jordan's airbench ResNet-18 baselines; David Page's ResNet-9). Batch
# 256 and 30 epochs are choices docs/recipes.md explains, not yet measured on a GPU.
FAST = dict(epochs=30, batch_size=256, lr=0.2, nesterov=True, lr_schedule="triangle", warmup=0.2,
            label_smoothing=0.1, tta=True)
FAST_AUGMENT = dict(crop_padding=4, cutout=12)


def _fast(exp: "Experiment") -> "Experiment":
    """The fast recipe: Nesterov momentum, batch 256 at lr 0.2 (the report's 0.1 at 128,
    scaled linearly), a triangular schedule (a linear rise over the first fifth, then a
    linear fall to 0), label smoothing 0.1, a 4-pixel translation and a 12-pixel cutout
    added to the preset's own augmentation, flip test-time augmentation, 30 epochs."""
    aug = exp.augment
    augment = replace(aug, crop_padding=aug.crop_padding or FAST_AUGMENT["crop_padding"],
                      cutout=aug.cutout or FAST_AUGMENT["cutout"])
    return replace(exp, recipe="fast", augment=augment, milestones=None, **FAST)


RECIPES = {"report": _report, "fast": _fast}


# The report's rotation: 0 degrees most of the time, otherwise one of 30/330/60/300/90/270.
ANGLES = (0, 30, 330, 60, 300, 90, 270)

# Models 3 and 4: the report lists 0.89/0.03/0.03/0.02/0.02/0.01/0.01, which sums to 1.01.
# Its code (Fig. 5) draws r uniform in [0, 1) and walks cumulative thresholds in an
# if/elif chain: 0.89, 0.92, 0.95, 0.97, 0.99, 1.00 - so 0 degrees has probability exactly
# 0.89 and 270 degrees (the last branch, r >= 1.00) never happens. colabkit reproduces
# what the report's code did, not the weights as printed.
REPORT_DA = AugmentSpec(hflip=0.5, vflip=0.1, rotate_angles=ANGLES,
                        rotate_probs=(0.70, 0.08, 0.08, 0.05, 0.05, 0.02, 0.02))
REPORT_DA_LIGHT = AugmentSpec(hflip=0.5, vflip=0.1, rotate_angles=ANGLES,
                              rotate_probs=(0.89, 0.03, 0.03, 0.02, 0.02, 0.01, 0.0))

PRESETS: dict[str, Experiment] = {
    # the report's four models
    "basic": Experiment("basic", model="resnet18", augment=AugmentSpec(hflip=0.5)),
    "da": Experiment("da", model="resnet18", augment=REPORT_DA),
    "da_cbam": Experiment("da_cbam", model="resnet18_cbam", augment=REPORT_DA_LIGHT),
    "da_cbam_aspp": Experiment("da_cbam_aspp", model="resnet18_cbam_aspp", augment=REPORT_DA_LIGHT),
    # ablations: one change at a time
    "cbam": Experiment("cbam", model="resnet18_cbam", augment=AugmentSpec(hflip=0.5)),
    "da_light": Experiment("da_light", model="resnet18", augment=REPORT_DA_LIGHT),
    "basic_crop": Experiment("basic_crop", model="resnet18",
                             augment=AugmentSpec(hflip=0.5, crop_padding=4)),
    "da_cbam_spp": Experiment("da_cbam_spp", model="resnet18_cbam_spp", augment=REPORT_DA_LIGHT),
}
REPORT_MODELS = ("basic", "da", "da_cbam", "da_cbam_aspp")
# run folder name -> preset: the names the four notebooks (notebooks/<name>.ipynb) use, so
# the queue and the notebooks continue each other's runs
QUEUE = (("01_resnet18_basic", "basic"), ("02_resnet18_da", "da"),
         ("03_resnet18_da_cbam", "da_cbam"), ("04_resnet18_da_cbam_aspp", "da_cbam_aspp"))
# What each ablation is compared with, and what the comparison isolates.
ABLATIONS = {
    "cbam": ("basic", "CBAM alone (flip-only augmentation)"),
    "da_light": ("da_cbam", "CBAM alone under model 3's augmentation"),
    "basic_crop": ("basic", "the usual random crop, which the report never mentions"),
    "da_cbam_spp": ("da_cbam_aspp", "an SPP head against the ASPP head"),
}

# The report's Table 1, for comparison in the results table: (best test acc. %, epoch).
REPORTED_BEST = {"basic": (95.000, 286), "da": (93.409, 249),
                 "da_cbam": (94.709, 232), "da_cbam_aspp": (94.936, 281)}


def with_recipe(exp: Experiment, recipe: str) -> Experiment:
    """``exp`` trained by ``recipe``: the same network and data, its own augmentation with
    the recipe's additions."""
    return lookup(RECIPES, recipe, "recipe")(exp)


# 0 means "the recipe's value" for these, everywhere: notebooks, the command line, Python
DEFAULT_IF_ZERO = ("epochs", "batch_size", "train_size", "test_size", "val_size")


def get_experiment(name: str, recipe: str = "report", **overrides: Any) -> Experiment:
    """A preset by name, trained by ``recipe`` (``"report"`` or ``"fast"``), with fields
    overridden, e.g. ``get_experiment("da", recipe="fast", epochs=10)``. An override of
    ``None`` keeps the recipe's value (``epochs=None``: 300 for the report's, 30 for the
    fast one), and so does 0 for the fields in ``DEFAULT_IF_ZERO`` (as a notebook's
    ``EPOCHS = 0`` and the command line's ``--epochs 0``). ``augment`` may be given as a dict. Unknown names, recipes and fields raise
    ``ValueError``."""
    preset = lookup(PRESETS, name, "experiment")
    check_keys(overrides, FIELDS, "Experiment field")
    overrides = {k: v for k, v in overrides.items() if v is not None and not (k in DEFAULT_IF_ZERO and v == 0)}
    return replace(with_recipe(preset, recipe), **overrides)


def recipe_epochs(recipe: str) -> int:
    """The length of a run trained by ``recipe`` when none is given: 300 or 30."""
    return with_recipe(Experiment("length"), recipe).epochs


def run_name(base: str, recipe: str = "report", epochs: int | None = None) -> str:
    """The run folder's name: ``base`` for the report's recipe, ``base-fast`` for the fast
    one, so a run of one recipe never resumes a run of the other; and ``-<N>ep`` after it
    when ``epochs`` is not the recipe's length, so a 30-epoch trial and the 300-epoch run
    are two folders and neither changes the other's learning-rate schedule."""
    default = recipe_epochs(recipe)  # also refuses an unknown recipe
    name = base if recipe == "report" else f"{base}-{recipe}"
    if epochs and epochs != default:
        name += f"-{epochs}ep"
    return name
