"""colabkit: the report "Experiment 2: Training Deep Neural Networks for CIFAR10",
as four Colab notebooks over this package. Resumable ResNet18 (+ CBAM, + ASPP)
training on CIFAR-12 with data and augmentation on the GPU.

Every public name is imported the first time it is used (PEP 562), so ``import colabkit``
is cheap and a training process never loads what only the report needs (pandas,
matplotlib, SciPy). The wings are described in docs/design.md, "The floors".
"""
import importlib
import warnings

from .version import __version__

# each public name, and the module (under colabkit) that defines it
_WHERE = {
    "Dataset": "data.sources", "load_dataset": "data.sources",
    "Experiment": "experiments", "get_experiment": "experiments", "run_name": "experiments",
    "PRESETS": "experiments", "RECIPES": "experiments",
    "build_model": "models", "MODELS": "models",
    "DeviceError": "colab.device", "check_gpu": "colab.device",
    "DriveError": "colab.drive", "mount_drive": "colab.drive", "flush_drive": "colab.drive",
    "in_colab": "colab.drive",
    "show_tensorboard": "colab.board", "tensorboard_logdir": "colab.board",
    "write_tensorboard": "rundir.events",
    "LeaseHeld": "colab.lease",
    "train": "training.loop",
    "load_runs": "report.tables", "results_table": "report.tables",
    "plot_curves": "report.figures", "LiveCurves": "report.figures",
    "show": "report.plotting",
    "queue_status": "report.status", "status_table": "report.status",
    "comparison_sentences": "report.compare", "comparison_table": "report.compare",
    "per_class_table": "report.compare",
    "write_report": "report.write",
    "run_queue": "sweeps", "sweep": "sweeps",
    "inspect_run": "report.inspection",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str):
    """A public name, imported from its module on first use and kept here after that.
    ``colabkit.inspect``, the name of ``inspect_run`` until 0.4.0, still works for a while:
    the old name shadowed the standard library's ``inspect`` (``from colabkit import *``),
    so it is no longer exported and warns."""
    if name == "inspect":
        warnings.warn("colabkit.inspect is now colabkit.inspect_run; the old name will be "
                      "removed: call inspect_run", DeprecationWarning, stacklevel=2)
        return __getattr__("inspect_run")
    if name not in _WHERE:
        raise AttributeError(f"module 'colabkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
