"""What only a GPU can show. Marked ``cuda``: skipped where no CUDA GPU is visible, run by
``bench/gpu_check.sh`` (``pytest -m cuda``) on the first GPU at hand. On a GPU, cuDNN's
autotuned kernels make two runs close, not bit-equal: resumes are compared with a
tolerance here (the CPU tests compare bits)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from colabkit.augment import Augmenter
from colabkit.loader import DeviceLoader
from colabkit.data import synthetic
from colabkit.experiments import PRESETS, get_experiment
from colabkit.models import build_model
from colabkit.runs import read_metrics
from colabkit.train import train

pytestmark = pytest.mark.cuda
REPO = Path(__file__).resolve().parents[1]


def _exp(name="da_cbam", **kw):
    base = dict(dataset="synthetic", epochs=3, batch_size=128, width=16, train_size=1024,
                test_size=256, milestones=(2,))
    base.update(kw)
    return get_experiment(name, **base)


def _close_histories(a, b, tol=1.0):
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["lr"] == rb["lr"]
        assert abs(ra["train_acc"] - rb["train_acc"]) < tol * 5
        assert abs(ra["train_loss"] - rb["train_loss"]) < 0.1 * tol * max(1.0, rb["train_loss"])


def test_auto_precision_trains_and_checkpoints_load_on_the_cpu(tmp_path):
    res = train(_exp(), tmp_path, device="cuda", progress=False)
    assert res["status"] == "finished" and res["epochs_done"] == 3
    state = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    major, _ = torch.cuda.get_device_capability()
    assert state["precision"] == ("bf16" if major >= 8 else "fp16")
    assert all(t.device.type == "cpu" for t in state["model"].values())
    model = build_model("resnet18_cbam", 12, width=16)
    model.load_state_dict(state["model"])  # no channels_last or device left in the weights' way


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_resume_on_the_gpu_continues_with_the_same_history(tmp_path, precision):
    if precision == "bf16" and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("bf16 needs sm_80 or newer")
    exp = _exp()
    ref = train(exp, tmp_path / "ref", device="cuda", precision=precision, progress=False)
    train(_exp(epochs=2), tmp_path / "run", device="cuda", precision=precision, progress=False)
    res = train(exp, tmp_path / "run", device="cuda", precision=precision, progress=False)
    _close_histories(res["history"], ref["history"])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    if precision == "fp16":  # the T4 path: the grad scaler's state is saved and restored
        assert state["scaler"]["scale"] > 0
    assert len(read_metrics(tmp_path / "run" / "metrics.csv")) == 3


def test_background_writer_on_cuda_saves_at_the_last_finished_epoch_on_interrupt(tmp_path, monkeypatch):
    import colabkit.loader as loader_mod

    real = loader_mod.DeviceLoader.epoch

    def epoch(self, e):
        for i, item in enumerate(real(self, e)):
            if self.train and e == 3 and i == 2:
                raise KeyboardInterrupt
            yield item
    monkeypatch.setattr(loader_mod.DeviceLoader, "epoch", epoch)
    res = train(_exp(epochs=5), tmp_path, device="cuda", progress=False)  # background by default
    assert res["status"] == "interrupted" and res["epochs_done"] == 2
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2


def test_channels_last_batches_and_cuda_generator_are_deterministic():
    ds = synthetic(train_size=512, test_size=64)
    aug = Augmenter(PRESETS["da"].augment)
    a, b = (DeviceLoader(ds.x_train, ds.y_train, 128, device="cuda", mean=ds.mean, std=ds.std,
                         train=True, seed=5, augment=aug) for _ in range(2))
    for (xa, ya), (xb, yb) in zip(a.epoch(2), b.epoch(2)):
        assert xa.is_cuda and xa.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # DDP ranks on CUDA: each one's slice of the single-process augmented batch
    parts = [DeviceLoader(ds.x_train, ds.y_train, 128, device="cuda", mean=ds.mean, std=ds.std,
                          train=True, seed=5, augment=aug, rank=r, world_size=2) for r in range(2)]
    for (x, _), (x0, _), (x1, _) in zip(a.epoch(3), parts[0].epoch(3), parts[1].epoch(3)):
        assert torch.equal(torch.cat([x0, x1]), x)


def test_compile_on_cuda_trains(tmp_path):
    res = train(_exp(epochs=1), tmp_path, device="cuda", compile=True, progress=False)
    assert res["epochs_done"] == 1 and res["final_acc"] > 100 / 12


def test_the_fast_recipe_compiled_on_cuda_trains_and_resumes(tmp_path):
    from dataclasses import replace

    from colabkit.experiments import with_recipe
    exp = replace(with_recipe(_exp(epochs=2), "fast"), epochs=2)
    train(replace(exp, epochs=1), tmp_path, device="cuda", compile=True, progress=False)
    res = train(exp, tmp_path, device="cuda", compile=True, progress=False)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert res["epochs_done"] == 2 and res["accuracy"] == "flip TTA"
    assert all(r["test_acc_tta"] is not None for r in rows) and res["final_acc"] > 100 / 12


@pytest.mark.parametrize("name", list(PRESETS))
def test_memory_of_a_training_step_at_batch_128_stays_under_5_gb(name):
    from colabkit.runtime import choose_precision
    from colabkit.epochs import _autocast

    dev = torch.device("cuda")
    prec = choose_precision(dev)
    model = build_model(PRESETS[name].model, 12).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=prec == "fp16")
    x = torch.randn(128, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 12, (128,), device=dev)
    torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(3):
        with _autocast(dev, prec):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    print(f"{name}: peak {peak:.2f} GiB at batch 128 ({prec})")
    assert peak < 5.0


def test_nccl_two_processes(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("NCCL needs two GPUs")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "colabkit", "train", "--experiment", "da", "--dataset", "synthetic", "--width", "16",
           "--batch-size", "128", "--train-size", "1024", "--test-size", "256", "--epochs", "2",
           "--device", "cuda", "--quiet", "--run-dir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(read_metrics(tmp_path / "run" / "metrics.csv")) == 2
