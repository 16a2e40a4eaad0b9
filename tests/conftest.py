"""Shared fixtures: small data in the real on-disk formats, and a tiny experiment."""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

# One intra-op thread in the tests and in every process they start (which inherit it); set
# before torch loads. The tests' networks are tiny: two OpenMP threads made a training step
# 4-8 times slower than one, more so on shared cores, and `pytest -n 2` puts a worker on
# each core. Every bit-exact comparison is between runs made under this same setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest

from colabkit.colab import drive
from colabkit.experiments import get_experiment
from fake_colab import FakeColab

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where a CUDA GPU is visible."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run bench/gpu_check.sh on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _image_rows(codes, rng):
    """(N, 3072) uint8 in CIFAR's layout (1024 R, 1024 G, 1024 B); the first red byte
    holds a code identifying the image, the first green byte 200, the first blue 100."""
    rows = rng.integers(0, 256, (len(codes), 3072), dtype=np.uint8)
    rows[:, 0] = codes
    rows[:, 1024] = 200
    rows[:, 2048] = 100
    return rows


def write_cifar10(root: Path, per_class_train: int = 3, per_class_test: int = 1, seed: int = 0):
    """cifar-10-batches-py/ as the real archive unpacks: 5 data batches, a test batch, meta."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True)
    labels = np.repeat(np.arange(10), per_class_train)
    rng.shuffle(labels)
    for i, part in enumerate(np.array_split(labels, 5), 1):
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {i} of 5", "labels": part.tolist(),
                         "data": _image_rows(part, rng),
                         "filenames": [f"img{j}.png" for j in range(len(part))]}, f, protocol=2)
    test = np.repeat(np.arange(10), per_class_test)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": test.tolist(),
                     "data": _image_rows(test, rng), "filenames": []}, f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072}, f)
    return labels, test


def write_cifar100(root: Path, per_fine_train: int = 2, per_fine_test: int = 1, seed: int = 1):
    """cifar-100-python/ with train, test, meta; fine labels 0..99, coarse = fine // 5
    here (the real mapping differs, which is why the code reads coarse_labels)."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-100-python"
    d.mkdir(parents=True)
    out = {}
    for split, per in (("train", per_fine_train), ("test", per_fine_test)):
        fine = np.repeat(np.arange(100), per)
        rng.shuffle(fine)
        coarse = fine // 5
        with open(d / split, "wb") as f:
            pickle.dump({"filenames": [], "batch_label": split, "fine_labels": fine.tolist(),
                         "coarse_labels": coarse.tolist(),
                         "data": _image_rows(100 + fine, rng)}, f, protocol=2)
        out[split] = (fine, coarse)
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)],
                     "coarse_label_names": [f"c{i}" for i in range(20)]}, f)
    return out


def write_image_folder(root: Path, classes=("cat", "dog", "emu"), n_train=4, n_test=2,
                       size=(32, 32), fmt="png", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for ci, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for j in range(n):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                arr[0, 0] = (ci * 40, 7, 9)
                Image.fromarray(arr).save(root / split / c / f"{j:04d}.{fmt}")


@pytest.fixture
def tiny():
    """A seconds-long experiment: synthetic data, a narrow ResNet18, small splits."""
    def make(name="basic", **kw):
        base = dict(dataset="synthetic", epochs=3, batch_size=32, width=4, train_size=128,
                    test_size=64, milestones=(2,))
        base.update(kw)
        return get_experiment(name, **base)
    return make


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """This process as a Colab VM whose ``google.colab.drive`` keeps the real contract
    (tests/fake_colab.py): Drive at ``<tmp>/vm/content/drive``, the working area local."""
    fake = FakeColab(tmp_path / "vm")
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(os.path, "ismount", fake.ismount)
    monkeypatch.setattr(drive, "DRIVE_MOUNTPOINT", fake.mountpoint)
    monkeypatch.setenv("COLABKIT_LOCAL", str(tmp_path / "vm" / "content" / "colabkit-local"))
    return fake


@pytest.fixture
def no_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import raises ImportError


def drawn_png(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """The pixels of a PNG the report drew, after checking it is a PNG of ``size`` (width,
    height; None: any) with something drawn on it: lines or bars in colour, not a blank canvas."""
    import matplotlib.image as mpimg

    raw = Path(path).read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", path
    img = mpimg.imread(path)[..., :3]
    assert size is None or (img.shape[1], img.shape[0]) == size, (path, img.shape)
    saturated = (img.max(axis=2) - img.min(axis=2)) > 0.3  # coloured, not grey or white
    assert saturated.mean() > 0.002, f"{path}: nothing coloured drawn"
    return img


def independent_predictions(state: dict, data, tta: bool = False) -> np.ndarray:
    """The predicted class of each test image by a checkpoint's weights, computed without
    colabkit's loader or evaluation loop: normalize by hand, one forward pass in eval mode;
    with ``tta``, the class of the summed logits of the image and its left-right mirror."""
    import torch

    from colabkit.experiments import Experiment
    from colabkit.models import build_model

    cfg = Experiment.from_dict(state["config"])
    model = build_model(cfg.model, data.num_classes, width=cfg.width,
                        attention_kwargs={"kernel_size": cfg.spatial_kernel})
    model.load_state_dict(state["model"])
    model.eval()
    x = torch.from_numpy(data.x_test).float().div(255).permute(0, 3, 1, 2)
    mean = torch.tensor(data.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x - mean) / std
    with torch.no_grad():
        logits = model(x)
        if tta:
            logits = logits + model(torch.flip(x, dims=[3]))  # W is the last axis of NCHW
        return logits.argmax(1).numpy()
