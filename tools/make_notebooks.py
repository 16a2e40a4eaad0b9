"""Writes notebooks/00_...05_ from the texts below, without outputs.

The notebooks hold prose and calls only; edit here and run
``python tools/make_notebooks.py`` so the five stay consistent (a test checks that the
committed notebooks are this script's output).
"""
from __future__ import annotations

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks"
# the version and the repository, from the one place they are written (read without
# importing colabkit, so this runs without torch)
_RELEASE = runpy.run_path(str(ROOT / "colabkit" / "version.py"))
REPO_URL = _RELEASE["REPO_URL"]
REF = _RELEASE["RELEASE_TAG"]  # the release the notebooks install: a run must not change code mid-way
OWNER_REPO = REPO_URL.removeprefix("https://github.com/")
BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         f"(https://colab.research.google.com/github/{OWNER_REPO}/blob/main/notebooks/{{file}})")
PIP_LOG = "/tmp/colabkit-pip.log"

SETUP = f'''# Setup: in Colab, install colabkit (torch, torchvision and ipywidgets stay as Colab has them).
# Elsewhere this cell does nothing: install colabkit with `pip install -e .` instead.
REPO_URL = "{REPO_URL}"  # where colabkit is installed from: change this to your fork
REF = "{REF}"  # a fixed release (tag or commit): every session of a run uses the same code
import subprocess, sys
from IPython.core.error import UsageError  # Jupyter shows it as one line, with no traceback
if "google.colab" in sys.modules:
    with open("{PIP_LOG}", "w") as log:
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{{REPO_URL}}@{{REF}}"],
                             stdout=log, stderr=subprocess.STDOUT)
    if pip.returncode:
        raise UsageError(f"pip could not install colabkit {{REF}} from {{REPO_URL}} (its output is in "
                         "{PIP_LOG}): set REF to a tag or commit that exists there, or REPO_URL "
                         "to the repository that has it, then run this cell again.")'''

MODELS = {
    "01_resnet18_basic.ipynb": dict(
        experiment="basic", title="Model 1: ResNet18", report="95.000% at epoch 286",
        text="""The plain CIFAR ResNet18: a 3×3 stem with 64 channels and no max-pool, four
stages of two residual blocks (64, 128, 256, 512 channels), global average pooling and one
linear layer over the 12 classes — 11,174,988 parameters.

**Augmentation:** horizontal flip with probability 0.5, nothing else.

**Schedule (the report's):** 300 epochs of SGD, learning rate 0.1 for epochs 1–100, 0.01 for
101–200, 0.001 for 201–300. Batch 128, momentum 0.9 and weight decay 5e-4 are the usual
CIFAR values (the report does not state them)."""),
    "02_resnet18_da.ipynb": dict(
        experiment="da", title="Model 2: ResNet18 with data augmentation", report="93.409% at epoch 249",
        text="""The same ResNet18 as model 1 (11,174,988 parameters), trained on harder data.

**Augmentation:** horizontal flip (p = 0.5), vertical flip (p = 0.1), and a rotation drawn
from a discrete distribution: 0° with probability 0.70, 30° and 330° with 0.08 each, 60° and
300° with 0.05, 90° and 270° with 0.02. Rotations are bilinear about the image centre, corners
black, as torchvision rotates a PIL image — but done for the whole batch at once on the GPU.

In the report this model reached a *lower* accuracy than model 1: rotations of 30–90° make
CIFAR's upright photographs less typical of the test set."""),
    "03_resnet18_da_cbam.ipynb": dict(
        experiment="da_cbam", title="Model 3: ResNet18 + CBAM", report="94.709% at epoch 232",
        text="""ResNet18 with a CBAM attention module (Woo et al., 2018) in each of its 8 residual
blocks, acting on the residual branch before the shortcut is added: first *channel* attention
(a shared two-layer MLP over average- and max-pooled features), then *spatial* attention (a
3×3 convolution over the channel-mean and channel-max maps) — 11,262,172 parameters.

**Augmentation:** as model 2 but rarer rotations: flips 0.5 / 0.1; 0° with weight 0.89, 30° and
330° 0.03, 60° and 300° 0.02, 90° 0.01. The report prints 0.01 for 270° too, but those weights
sum to 1.01, and its code (a uniform draw walked through cumulative thresholds) never reaches
270°: colabkit reproduces what the code did, so 0° has probability exactly 0.89."""),
    "04_resnet18_da_cbam_aspp.ipynb": dict(
        experiment="da_cbam_aspp", title="Model 4: ResNet18 + CBAM + ASPP",
        report="94.936% at epoch 281",
        text="""Model 3 with an ASPP head (Chen et al., 2017) on the last stage. Its 4×4 maps are too
small for DeepLab's rates, so — as the report says, "more like SPP" — the head has four
parallel branches: a 1×1 convolution, 3×3 convolutions at rates 1 and 2, and image-level
pooling; they are concatenated and projected back to 512 channels before pooling and the
classifier — 14,410,972 parameters.

**Augmentation:** the same as model 3."""),
}

# the GPU before Drive: on a CPU runtime the user switches runtime before approving Drive access
GPU_THEN_DRIVE = '''import colabkit

try:  # one line, no traceback (UsageError), for what the user fixes in Colab's menus
    gpu = colabkit.check_gpu(allow_cpu=ALLOW_CPU)
    home = colabkit.mount_drive()
except (colabkit.DeviceError, colabkit.DriveError) as e:
    raise UsageError(str(e)) from None'''

COMMON_TAIL = """## After a disconnect

Colab stops idle or long sessions. Every finished epoch is checkpointed in a working copy
on the VM's disk and logged in `metrics.csv`; the run folder on Drive receives a copy every
`MIRROR_MINUTES` (and at every stop: the end, the time budget, the stop button), keeping
two checkpoints that verify (`last.pt`, `last.prev.pt`) and `best.pt`. A disconnect costs
at most `MIRROR_MINUTES` of training plus what Drive had not yet uploaded (usually minutes;
colabkit forces the upload at the end and at the time budget). Reconnect, choose *Runtime →
Run all*, and training continues from the newest checkpoint that verifies — with the very
batches it would have seen. The lost runtime counts as gone once it has been silent for three
of the run's epoch times plus five minutes for Drive's upload (about 8 minutes with 60-second
epochs); *Run all* sooner says how long to wait, or tick `TAKEOVER`. If the same run is
training in another tab, a second one refuses to train it (tick `TAKEOVER` only if the first
should stop)."""

COLAB_LIMITS = """## Colab's limits

A free Colab session ends after at most about 12 hours, sooner when the tab is idle (about 90
minutes without interaction) or when Google needs the GPU back; daily GPU time is limited and
not published. colabkit does not try to keep a runtime alive: it makes ending harmless. Set
`MAX_MINUTES` a little below the time you expect to have, come back, and *Run all* again.
Form values you change in a notebook opened from GitHub are lost when the tab closes unless
you save it: *File → Save a copy in Drive* first."""


TENSORBOARD_TEXT = (
    "## TensorBoard\n\nEvery run folder holds a TensorBoard event file written from the "
    "checkpoint's history, as `metrics.csv` is: each epoch once, also after a disconnect and "
    "a resume. The *HParams* tab has each run's settings with its best and final test "
    "accuracy, to sort and compare runs. `TENSORBOARD` starts the view here (it refreshes by "
    "itself while the next cells run); the line printed says where to point it by hand.")


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip().splitlines(True)}


def code(text, tags=None):
    meta = {"tags": tags} if tags else {}
    return {"cell_type": "code", "metadata": meta, "execution_count": None, "outputs": [],
            "source": text.strip().splitlines(True)}


def training_notebook(file, experiment, title, report, text):
    return [
        md(f"# {title}\n\n{BADGE.format(file=file)}\n\n"
           "Part of **colabkit**: the report *Experiment 2: Training Deep Neural Networks for "
           "CIFAR10*, rerunnable. Open in Colab on a T4 GPU and choose *Runtime → Run all*."),
        md(text + f"\n\n**The report's best test accuracy:** {report} (its Table 1)."),
        md("**Data: CIFAR-12.** CIFAR-10's 10 classes plus CIFAR-100's *fish* and *flowers* "
           "superclasses: 55,000 training and 11,000 test images (fish and flowers have half "
           "as many as the others). Built once and cached on Drive; kept on the GPU as uint8 "
           "and augmented there."),
        code(SETUP),
        md("## Parameters\n\nChange these in the form on the right. `MAX_MINUTES` stops after the "
           "last epoch that fits (0: no limit), counted from the start of the training cell; run "
           "again later to continue. `MIRROR_MINUTES`: how often the run is copied to Drive "
           "(0: every epoch; the first mirror then prints what that writes to Drive per hour). `RECIPE`: `report` trains as the report did (300 epochs, steps at "
           "100 and 200); `fast` trains the same network in 30 epochs (see docs/recipes.md in "
           "the repository). `EPOCHS` 0 takes the recipe's; with fewer epochs than 300 (a trial), the "
           "report's learning-rate steps fall at a third and two thirds of the run."),
        code(f'''EXPERIMENT = "{experiment}"
RUN_NAME = "{file.split('.')[0]}"  #@param {{type:"string"}}
RECIPE = "report"  #@param ["report", "fast"]
EPOCHS = 0  #@param {{type:"integer"}}
DATASET = "cifar12"  #@param ["cifar12", "cifar10", "synthetic"]
MAX_MINUTES = 0  #@param {{type:"number"}}
MIRROR_MINUTES = 10  #@param {{type:"number"}}
TAKEOVER = False  #@param {{type:"boolean"}}
ALLOW_CPU = False  #@param {{type:"boolean"}}
TENSORBOARD = True  #@param {{type:"boolean"}}
# for quick trials only: 0 means the whole split; WIDTH 64 is the report's ResNet18
TRAIN_SIZE = 0  #@param {{type:"integer"}}
TEST_SIZE = 0  #@param {{type:"integer"}}
WIDTH = 64
BATCH_SIZE = 0  # 0: the recipe's (128 report, 256 fast)''', tags=["parameters"]),
        md("## GPU and Drive\n\nThe GPU is checked first: on a CPU runtime the cell says so in one line "
           "(*Runtime → Change runtime type → T4 GPU*) before Drive asks for access. Runs and the "
           "data cache live in `MyDrive/colabkit` (outside Colab: `./colabkit-home`). A T4 trains "
           "in fp16 with a gradient scaler."),
        code(GPU_THEN_DRIVE),
        md("## Data"),
        code('''data = colabkit.load_dataset(DATASET, root=home / "data")
print(len(data.y_train), "training and", len(data.y_test), "test images:", data.counts())'''),
        md(TENSORBOARD_TEXT + " While training it shows the local working copies: Drive "
           "uploads files lazily, so a view of the Drive folder lags."),
        code('''colabkit.show_tensorboard(home / "runs", start=TENSORBOARD)'''),
        md("## Train\n\nThe run folder is `runs/RUN_NAME` on Drive: `runs/RUN_NAME-fast` for the "
           "fast recipe, and `-30ep` after it for an `EPOCHS` other than the recipe's, so a trial "
           "and the full run never mix. If it holds a checkpoint, training resumes from "
           "it; if the run is finished, its results come back at once. After the first epoch a "
           "line estimates the hours the rest needs and whether they fit `MAX_MINUTES`."),
        code('''experiment = colabkit.get_experiment(
    EXPERIMENT, RECIPE, dataset=DATASET, epochs=EPOCHS or None, width=WIDTH,
    batch_size=BATCH_SIZE or None, train_size=TRAIN_SIZE or None, test_size=TEST_SIZE or None)
experiment'''),
        code('''try:
    results = colabkit.train(experiment, home / "runs" / colabkit.run_name(RUN_NAME, RECIPE, EPOCHS), data=data,
                             max_minutes=MAX_MINUTES or None, mirror_minutes=MIRROR_MINUTES,
                             takeover=TAKEOVER, on_epoch=colabkit.LiveCurves())
except colabkit.LeaseHeld as e:  # another trainer has the run folder: one line, what to do
    raise UsageError(str(e)) from None'''),
        md("## Result"),
        code(f'''best = "none yet" if results["best_acc"] is None else \\
    f"{{results['best_acc']:.3f}}% at epoch {{results['best_epoch']}}"
print(f"{{results['status']}}: {{results['epochs_done']}}/{{results['epochs']}} epochs; "
      f"best test accuracy {{best}} (report: {report})")'''),
        md(COMMON_TAIL + "\n\n" + COLAB_LIMITS + "\n\nWhen all four runs are done, "
           "`05_report.ipynb` draws the report's figures and table from them — no GPU needed. "
           "`00_run_all.ipynb` trains all four one after another."),
    ]


def queue_notebook(file):
    return [
        md(f"# All four models, queued across sessions\n\n{BADGE.format(file=file)}\n\n"
           "Trains the report's four models one after another into the same run folders as "
           "notebooks 01–04 (`runs/01_resnet18_basic`, …): each resumes where it stopped, a "
           "finished one is skipped. Open in Colab on a T4 GPU and choose *Runtime → Run all*; "
           "in each new session, *Run all* again continues the queue. `MAX_MINUTES` is the "
           "budget of the whole session (counted from the start of the training cell)."),
        code(SETUP),
        code('''RECIPE = "report"  #@param ["report", "fast"]
EPOCHS = 0  #@param {type:"integer"}
DATASET = "cifar12"  #@param ["cifar12", "cifar10", "synthetic"]
MAX_MINUTES = 0  #@param {type:"number"}
MIRROR_MINUTES = 10  #@param {type:"number"}
TAKEOVER = False  #@param {type:"boolean"}
ALLOW_CPU = False  #@param {type:"boolean"}
TENSORBOARD = True  #@param {type:"boolean"}
# for quick trials only: 0 means the whole split; WIDTH 64 is the report's ResNet18
TRAIN_SIZE = 0  #@param {type:"integer"}
TEST_SIZE = 0  #@param {type:"integer"}
WIDTH = 64
BATCH_SIZE = 0  # 0: the recipe's (128 report, 256 fast)''', tags=["parameters"]),
        code(GPU_THEN_DRIVE + '''
data = colabkit.load_dataset(DATASET, root=home / "data")'''),
        md(TENSORBOARD_TEXT + " Here it shows the four runs on Drive, side by side."),
        code('''colabkit.show_tensorboard(home / "runs", training=False, start=TENSORBOARD)'''),
        md("## Train\n\nFirst the table of where the queue stands, per run: finished, running "
           "(in another tab or session), stalled (a trainer holds it but has gone silent), "
           "stopped, or not started; epochs done, the last update and the hours left, estimated "
           "from measured epoch times; with `MAX_MINUTES`, `fits` says which runs this session "
           "can finish. Then one progress bar for the whole queue; each run's lines say when it "
           "starts. Drive is flushed once, at the end of the queue. Without explicit milestones "
           "the report's learning-rate steps fall at a third and two thirds of `EPOCHS` (epochs "
           "100 and 200 of 300)."),
        code('''try:
    results = colabkit.run_queue(
        home / "runs", data=data, max_minutes=MAX_MINUTES or None, mirror_minutes=MIRROR_MINUTES,
        takeover=TAKEOVER, recipe=RECIPE, dataset=DATASET, epochs=EPOCHS or None, width=WIDTH,
        batch_size=BATCH_SIZE or None, train_size=TRAIN_SIZE or None, test_size=TEST_SIZE or None)
except colabkit.LeaseHeld as e:  # another trainer has a run folder: one line, what to do
    raise UsageError(str(e)) from None'''),
        code('''for r in results:
    best = "-" if r.get("best_acc") is None else f"{r['best_acc']:.2f}% at epoch {r['best_epoch']}"
    print(f"{r['run_dir']}: {r['status']}, best test accuracy {best}")'''),
        md(COMMON_TAIL.replace("## After a disconnect", "## After a disconnect or the budget")
           + "\n\n" + COLAB_LIMITS),
    ]


def report_notebook(file):
    return [
        md(f"# The report's figures and table, from saved logs\n\n{BADGE.format(file=file)}\n\n"
           "Reads the run folders on Drive (`metrics.csv` and `config.json` of each run) and "
           "redraws Figure 11 (training accuracy), Figure 12 (test accuracy) and Figure 13 "
           "(training loss), one line per run, and Table 1. Runs in progress are drawn as "
           "far as they got; with no run yet, every cell still runs and says so. No GPU "
           "needed: choose a CPU runtime."),
        code(SETUP),
        code('''RUNS = "runs"  #@param {type:"string"}
OUT = "report"  #@param {type:"string"}
# confusion matrices and INSPECT (attention maps, robustness to flips and rotations, cost,
# mistakes) evaluate each run's checkpoint on its test set: they need the data on Drive
CONFUSION = False  #@param {type:"boolean"}
INSPECT = False  #@param {type:"boolean"}
TENSORBOARD = True  #@param {type:"boolean"}''', tags=["parameters"]),
        md("## Save first\n\nPNG and PDF figures, Table 1, the comparisons and per-class "
           "accuracy go to `OUT` on Drive before anything is shown, so a cell that fails "
           "later loses nothing; with `INSPECT`, each run's attention maps, robustness, cost "
           "and mistakes go to `OUT/inspect/<run>/`."),
        code('''import colabkit

try:  # one line, no traceback (UsageError)
    home = colabkit.mount_drive()
except colabkit.DriveError as e:
    raise UsageError(str(e)) from None
written = colabkit.write_report(home / RUNS, home / OUT, confusion=CONFUSION, inspect=INSPECT,
                                data_root=home / "data", allow_empty=True)
runs = colabkit.load_runs(home / RUNS, allow_empty=True)
sorted(p.name for paths in written.values() for p in paths)'''),
        md("## Where each run stands\n\nFinished, running (in another tab or session), "
           "stalled (a trainer holds the folder but has gone silent for several epoch "
           "times), stopped, or not started; the last update and the estimated hours left."),
        code('''colabkit.status_table(home / RUNS)'''),
        md(TENSORBOARD_TEXT + " Here it shows every run on Drive."),
        code('''colabkit.show_tensorboard(home / RUNS, training=False, start=TENSORBOARD)'''),
        md("## Table 1: best test accuracy per model\n\nOne row per configuration: runs of "
           "one experiment that differ in anything but the seed (a 30-epoch trial and the "
           "300-epoch run, say) are separate rows, and with several seeds of one "
           "configuration, mean ± standard deviation. The report's values are in the last "
           "columns, beside runs in the report's setting only."),
        code('''table = colabkit.results_table(runs)
table'''),
        md("## Figures 11–13\n\nDashed lines mark the learning-rate steps (epochs 100 and 200)."),
        code('''colabkit.show(colabkit.plot_curves(runs, "train_acc"))
colabkit.show(colabkit.plot_curves(runs, "test_acc"))
colabkit.show(colabkit.plot_curves(runs, "train_loss"))'''),
        md("## Do CBAM and ASPP help?\n\nThe report compared one run per model, choosing the "
           "best epoch on the test set. Here, for each pair of experiments: the difference of "
           "best test accuracy with a 95% interval (over seeds when each has two or more, else "
           "a bootstrap over test images) and an exact McNemar test on the two models' "
           "predictions of the same test images. Runs with `VAL_SIZE` choose their best epoch "
           "on a validation split, so their test accuracy is not picked on the test set. "
           "`python -m colabkit sweep` trains several seeds and the ablations (`cbam`, "
           "`da_light`, `basic_crop`, `da_cbam_spp`)."),
        code('''comparison = colabkit.comparison_table(home / RUNS, runs)
print(colabkit.comparison_sentences(comparison))'''),
        md("## Per class\n\nTest accuracy per class at each run's best epoch. *fish* and "
           "*flowers* (CIFAR-100's superclasses) have half the test images of the others (500 "
           "each): their accuracies are less certain."),
        code('''colabkit.per_class_table(home / RUNS)'''),
        md("## Did the rotations buy robustness?\n\nAccuracy of each run's best checkpoint "
           "under test-time flips and rotations (identity first), with `INSPECT` set: model 2's "
           "rotations should pay off on rotated images, at some cost on upright ones."),
        code('''from IPython.display import Image

Image(filename=str(home / OUT / "robustness_all.png")) if INSPECT and len(runs) else "set INSPECT = True"'''),
    ]


def notebook(cells, gpu=True):
    """Colab metadata: a T4 for the training notebooks; the report asks for no GPU."""
    meta = {"colab": {"provenance": []},
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}
    if gpu:
        meta["accelerator"] = "GPU"
        meta["colab"]["gpuType"] = "T4"
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": meta}


def render() -> dict[str, str]:
    books = {"00_run_all.ipynb": notebook(queue_notebook("00_run_all.ipynb"))}
    books.update({f: notebook(training_notebook(f, **kw)) for f, kw in MODELS.items()})
    books["05_report.ipynb"] = notebook(report_notebook("05_report.ipynb"), gpu=False)
    for nb in books.values():
        for i, cell in enumerate(nb["cells"]):
            cell["id"] = f"cell-{i:02d}"
    return {f: json.dumps(nb, indent=1, ensure_ascii=False) + "\n" for f, nb in books.items()}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print("wrote", OUT / name)
