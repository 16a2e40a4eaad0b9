"""colabkit: the report "Experiment 2: Training Deep Neural Networks for CIFAR10",
as four Colab notebooks over this package. Resumable ResNet18 (+ CBAM, + ASPP)
training on CIFAR-12 with data and augmentation on the GPU."""

import warnings

from .version import __version__
from .data import Dataset, load_dataset
from .experiments import Experiment, get_experiment, run_name, PRESETS, RECIPES
from .models import build_model, MODELS
from .runtime import DeviceError, DriveError, check_gpu, mount_drive, flush_drive, in_colab
from .lease import LeaseHeld
from .train import train
from .tables import load_runs, results_table
from .figures import plot_curves, LiveCurves
from .plotting import show
from .status import queue_status, status_table
from .compare import comparison_sentences, comparison_table, per_class_table
from .report import write_report
from .sweep import run_queue, sweep
from .inspection import inspect_run

__all__ = [
    "__version__", "Dataset", "load_dataset", "Experiment", "get_experiment", "run_name",
    "PRESETS", "RECIPES",
    "build_model", "MODELS", "DeviceError", "DriveError", "check_gpu", "mount_drive", "flush_drive", "in_colab",
    "LeaseHeld", "train", "load_runs", "results_table", "plot_curves", "show", "status_table",
    "queue_status",
    "write_report", "LiveCurves", "run_queue", "sweep", "inspect_run",
    "comparison_table", "comparison_sentences", "per_class_table",
]


def __getattr__(name: str):
    """``colabkit.inspect``, the name of ``inspect_run`` until 0.4.0, kept working for a
    while: the old name shadowed the standard library's ``inspect`` (``from colabkit import
    *``), so it is no longer exported and warns."""
    if name == "inspect":
        warnings.warn("colabkit.inspect is now colabkit.inspect_run; the old name will be "
                      "removed: call inspect_run", DeprecationWarning, stacklevel=2)
        return inspect_run
    raise AttributeError(f"module 'colabkit' has no attribute {name!r}")
