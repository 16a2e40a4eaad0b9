"""colabkit: the report "Experiment 2: Training Deep Neural Networks for CIFAR10",
as four Colab notebooks over this package. Resumable ResNet18 (+ CBAM, + ASPP)
training on CIFAR-12 with data and augmentation on the GPU."""

__version__ = "0.2.0"

from .data import Dataset, load_dataset
from .experiments import Experiment, get_experiment, PRESETS
from .models import build_model, MODELS
from .runtime import check_gpu, mount_drive, flush_drive, in_colab
from .train import train
from .report import load_runs, results_table, plot_curves, status_table, write_report, LiveCurves
from .sweep import run_queue, sweep
from .inspection import inspect

__all__ = [
    "Dataset", "load_dataset", "Experiment", "get_experiment", "PRESETS",
    "build_model", "MODELS", "check_gpu", "mount_drive", "flush_drive", "in_colab",
    "train", "load_runs", "results_table", "plot_curves", "status_table", "write_report",
    "LiveCurves", "run_queue", "sweep", "inspect",
]
