"""colabkit.training.predict: one way to predict. Evaluation (which writes predictions.npz),
the report's confusion matrix from a model and inspection predict as the run did: its
precision, its normalization, flip TTA.

The runs here start with every class's logit raised by a constant (their last layer's
bias). Softmax and training do not see a common offset, but a precision does: near
``OFFSET[precision]`` bf16 (8 significant bits) and fp16 (11) round the logits into ties
that fp32 keeps apart, so each precision predicts other classes for many test images, and
a path that predicts in another precision than the run's cannot agree by chance (checked
below, against predictions made without colabkit)."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from colabkit.data.loader import DeviceLoader
from colabkit.data.sources import load_dataset
from colabkit.experiments import Experiment, get_experiment
from colabkit.report.inspection import inspect_run
from colabkit.report.write import confusion_matrix
from colabkit.rundir.checkpoint import read_checkpoint, save_checkpoint
from colabkit.rundir.runs import read_json, read_predictions
from colabkit.training.loop import train
from colabkit.training.predict import predict, eval_loader, trained_network, trained_precision
from conftest import independent_predictions

PRECISIONS = ["fp32", "bf16", "fp16"]  # CPU autocast runs fp16 too (slowly)
# the common offset of each run's logits: where its own precision ties some of them
OFFSET = {"fp32": 256.0, "bf16": 32.0, "fp16": 256.0}
TEST_IMAGES = 200


def _experiment():
    return get_experiment("basic", dataset="synthetic", epochs=2, batch_size=32, width=4,
                          train_size=128, test_size=TEST_IMAGES, milestones=(1,), tta=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short run with flip TTA in each precision, its logits offset (module docstring)."""
    root = tmp_path_factory.mktemp("predict")
    real = Experiment.network
    out = {}
    for precision in PRECISIONS:
        def raised(self, k, offset=OFFSET[precision]):
            net = real(self, k)
            with torch.no_grad():
                net.head.fc.bias += offset
            return net
        with pytest.MonkeyPatch.context() as m:
            m.setattr(Experiment, "network", raised)
            train(_experiment(), root / precision, progress=False, precision=precision)
        out[precision] = root / precision
    return out


def _test_split():
    return load_dataset("synthetic").subset(None, TEST_IMAGES, 0)


def _count(label, pred, k=12):
    """The confusion matrix [true, predicted], counted one image at a time."""
    cm = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(label, pred):
        cm[t, p] += 1
    return cm


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_runs_precision_shows_in_its_predictions(runs, precision):
    """The test's ground: in fp32 the saved predictions are those of a forward pass
    written without colabkit; in bf16 and fp16 they differ from that pass for many images
    (plain and with TTA), and from those of every other precision, so that a path which
    predicts in the wrong precision fails the test below."""
    saved = read_predictions(runs[precision] / "predictions.npz")
    state = read_checkpoint(runs[precision] / "best.pt")
    assert state["precision"] == precision and saved["epoch"] == state["epoch"]
    data = _test_split()
    assert np.array_equal(saved["label"], data.y_test)
    plain, tta = independent_predictions(state, data), independent_predictions(state, data, tta=True)
    if precision == "fp32":
        assert np.array_equal(saved["pred"], plain) and np.array_equal(saved["pred_tta"], tta)
    else:
        assert (saved["pred"] != plain).sum() >= 10 and (saved["pred_tta"] != tta).sum() >= 10
    model = trained_network(state, 12, "cpu")
    for other in PRECISIONS:
        if other != precision:
            p = predict(model, eval_loader(data, 32, "cpu"), other, tta=True)
            assert (p.pred != saved["pred"]).sum() >= 10 and (p.pred_tta != saved["pred_tta"]).sum() >= 10


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_confusion_matrix_from_the_model_agrees_with_predictions_npz(runs, precision, tmp_path):
    """Without predictions.npz (a DDP run) the report runs best.pt's network: in the
    run's precision, plain and with TTA, it counts what training saved."""
    saved = read_predictions(runs[precision] / "predictions.npz")
    run = tmp_path / "run"
    shutil.copytree(runs[precision], run)
    (run / "predictions.npz").unlink()
    cm, classes = confusion_matrix(run)
    assert np.array_equal(cm, _count(saved["label"], saved["pred"])) and len(classes) == 12
    cm_tta, _ = confusion_matrix(run, tta=True)
    assert np.array_equal(cm_tta, _count(saved["label"], saved["pred_tta"]))
    # a best.pt written before it named its precision: environment.json says it
    state = read_checkpoint(run / "best.pt")
    del state["precision"]
    save_checkpoint(state, run / "best.pt", keep_previous=False)
    assert read_json(run / "environment.json")["precision"] == precision
    assert np.array_equal(confusion_matrix(run, tta=True)[0], cm_tta)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_inspection_agrees_with_predictions_npz(runs, precision, tmp_path):
    """inspect_run's mistakes (every wrong prediction, with flip TTA as the run was
    evaluated) are the saved TTA predictions' mistakes, image by image; its identity
    accuracy (plain) is the saved plain predictions'."""
    saved = read_predictions(runs[precision] / "predictions.npz")
    inspect_run(runs[precision], tmp_path, cost_batch=8)
    wrong = pd.read_csv(tmp_path / "mistakes.csv")
    expected = {(i, int(p)) for i, (t, p) in enumerate(zip(saved["label"], saved["pred_tta"])) if t != p}
    assert set(zip(wrong["image"], wrong["predicted"])) == expected and len(wrong) == len(expected)
    assert list(wrong["true"]) == [int(saved["label"][i]) for i in wrong["image"]]
    assert (np.diff(wrong["confidence"]) <= 0).all()  # most confident first
    table = pd.read_csv(tmp_path / "robustness.csv").set_index("transform")
    assert table.loc["identity", "accuracy"] == pytest.approx(100 * (saved["pred"] == saved["label"]).mean())


def test_the_precision_of_a_checkpoint_is_its_own_else_the_runs_record_else_fp32():
    assert trained_precision({"precision": "fp16"}, {"precision": "bf16"}) == "fp16"
    assert trained_precision({}, {"precision": "bf16"}) == "bf16"
    assert trained_precision({}, {}) == "fp32" and trained_precision({}) == "fp32"



def test_flip_tta_classifies_by_the_sum_of_an_images_and_its_mirrors_logits():
    """A linear classifier that is not mirror-symmetric: plain, mirrored and summed logits
    pick other classes for many images; the expected classes are computed in NumPy from
    the images normalized by hand."""
    data = _test_split()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 12, bias=False))
    x = (data.x_test.astype(np.float64) / 255 - np.array(data.mean)) / np.array(data.std)  # NHWC
    x = x.transpose(0, 3, 1, 2)  # NCHW, as the network sees it
    w = model[1].weight.detach().double().numpy()
    plain = x.reshape(len(x), -1) @ w.T
    mirror = x[..., ::-1].reshape(len(x), -1) @ w.T  # W is the last axis
    p = predict(model, DeviceLoader(data.x_test, data.y_test, 64, mean=data.mean, std=data.std),
                "fp32", tta=True)
    assert np.array_equal(p.pred, plain.argmax(1)) and np.array_equal(p.label, data.y_test)
    assert np.array_equal(p.pred_tta, (plain + mirror).argmax(1))
    assert np.allclose(p.logits_tta.numpy(), (plain + mirror) / 2, atol=1e-3)
    # the three differ, so that each is checked
    assert (plain.argmax(1) != (plain + mirror).argmax(1)).sum() >= 20
    assert (mirror.argmax(1) != (plain + mirror).argmax(1)).sum() >= 20


def test_an_fp16_run_from_a_gpu_is_predicted_in_fp32_on_the_cpu_and_as_trained_elsewhere():
    """The CPU's fp16 kernels are some 50 times slower than fp32 and cannot reproduce a
    GPU's fp16 rounding: a T4 run read back on the CPU runs in fp32; on the GPU, or a run
    that trained on the CPU, in its own precision."""
    t4 = {"precision": "fp16", "device": "cuda:0"}
    assert trained_precision({"precision": "fp16"}, t4, "cpu") == "fp32"
    assert trained_precision({}, {"precision": "fp16"}, torch.device("cpu")) == "fp32"  # older: no device
    assert trained_precision({"precision": "fp16"}, t4, "cuda") == "fp16"
    assert trained_precision({"precision": "fp16"}, {"device": "cpu"}, "cpu") == "fp16"
    assert trained_precision({"precision": "bf16"}, t4, "cpu") == "bf16"
