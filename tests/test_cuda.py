"""What only a GPU can show. Marked ``cuda``: skipped where no CUDA GPU is visible, run by
``bench/gpu_check.sh`` (``pytest -m cuda``) on the first GPU at hand. By default cuDNN's
autotuned kernels make two runs close, not bit-equal; under
``torch.use_deterministic_algorithms(True)`` (cuDNN's autotuning then off) a resume is
compared bit for bit here, as the CPU tests compare it, so a lost momentum buffer or grad
scaler state cannot hide in a tolerance. The compile tests come last: they are the slow
ones, and the GPU check's stage limit cuts the file's end first."""
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

# before the first cuBLAS handle: the deterministic tests need its fixed workspace
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from colabkit.data.augment import Augmenter
from colabkit.data.loader import DeviceLoader
from colabkit.data.sources import synthetic
from colabkit.experiments import PRESETS, get_experiment
from colabkit.models import build_model
from colabkit.rundir.runs import DETERMINISTIC_FIELDS, read_metrics
from colabkit.training.loop import train

pytestmark = pytest.mark.cuda
REPO = Path(__file__).resolve().parents[1]


def _exp(name="da_cbam", **kw):
    base = dict(dataset="synthetic", epochs=3, batch_size=128, width=16, train_size=1024,
                test_size=256, milestones=(2,))
    base.update(kw)
    return get_experiment(name, **base)


@contextmanager
def deterministic():
    """Deterministic kernels for the block; the ops that have none are named (warnings)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def test_auto_precision_trains_and_checkpoints_load_on_the_cpu(tmp_path, monkeypatch):
    from colabkit.experiments import Experiment

    seen = set()
    real = Experiment.network

    def build(self, num_classes):  # the logits' dtype: autocast applied, in training and eval
        model = real(self, num_classes)
        model.register_forward_hook(lambda m, i, out: seen.add((m.training, out.dtype)))
        return model
    monkeypatch.setattr(Experiment, "network", build)
    res = train(_exp(), tmp_path, device="cuda", progress=False)
    assert res["status"] == "finished" and res["epochs_done"] == 3
    state = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    major, _ = torch.cuda.get_device_capability()
    assert state["precision"] == ("bf16" if major >= 8 else "fp16")
    dtype = torch.bfloat16 if major >= 8 else torch.float16
    assert seen == {(True, dtype), (False, dtype)}
    assert all(t.device.type == "cpu" for t in state["model"].values())
    model = build_model("resnet18_cbam", 12, width=16)
    model.load_state_dict(state["model"])  # no channels_last or device left in the weights' way


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_resume_on_the_gpu_with_deterministic_kernels_equals_the_uninterrupted_run(tmp_path, precision):
    """Weights, history and the grad scaler's state bit for bit: a resume that lost the
    momentum buffers or the scaler's scale and growth count differs at once."""
    if precision == "bf16" and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("bf16 needs sm_80 or newer")
    exp = _exp()
    with deterministic() as caught:
        ref = train(exp, tmp_path / "ref", device="cuda", precision=precision, progress=False)
        train(_exp(epochs=2), tmp_path / "run", device="cuda", precision=precision, progress=False)
        res = train(exp, tmp_path / "run", device="cuda", precision=precision, progress=False)
    print(f"{precision}: ops without a deterministic CUDA kernel:",
          sorted({str(w.message).split(" does not have")[0] for w in caught
                  if "deterministic" in str(w.message)}) or "none")
    det = lambda h: [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in h]
    assert det(res["history"]) == det(ref["history"])
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("run", "ref"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    if precision == "fp16":  # the T4 path: scale and growth count carried across the resume
        assert a["scaler"] == b["scaler"] and a["scaler"]["_growth_tracker"] > 0
    assert len(read_metrics(tmp_path / "run" / "metrics.csv")) == 3


def test_cbam_backward_has_a_deterministic_cuda_kernel():
    """Channel attention takes its max with amax: adaptive_max_pool2d's CUDA backward has
    no deterministic kernel, and under deterministic mode would raise here."""
    torch.use_deterministic_algorithms(True)
    try:
        model = build_model("resnet18_cbam_aspp", 12, width=16).cuda()
        x = torch.randn(32, 3, 32, 32, device="cuda")
        grads = []
        for _ in range(2):
            model.zero_grad()
            model(x).float().square().mean().backward()
            grads.append([p.grad.clone() for p in model.parameters()])
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize("size", [(4, 4), (5, 7)], ids=["4x4", "5x7"])
def test_spp_backward_has_a_deterministic_cuda_kernel(size):
    """The SPP head takes its bins' maxima with amax: adaptive_max_pool2d's CUDA backward
    has no deterministic kernel and would raise here under deterministic mode; on the last
    stage's 4x4 maps (bins that divide it) and on a 5x7 map (overlapping bins), twice the
    same gradients, and the CPU's values."""
    from colabkit.models import SPPHead

    torch.use_deterministic_algorithms(True)
    try:
        model = build_model("resnet18_cbam_spp", 12, width=16).cuda()
        x = torch.randn(32, 3, 32, 32, device="cuda")
        head = SPPHead(64, 12).cuda()
        maps = torch.randn(32, 64, *size, device="cuda", requires_grad=True)
        grads = []
        for _ in range(2):
            model.zero_grad()
            model(x).float().square().mean().backward()
            maps.grad = None
            head(maps).square().mean().backward()
            grads.append([p.grad.clone() for p in model.parameters()] + [maps.grad.clone()])
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    cpu = maps.detach().cpu().requires_grad_(True)
    head.cpu()(cpu).square().mean().backward()
    torch.testing.assert_close(cpu.grad, grads[0][-1].cpu())


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_training_steps_never_wait_for_the_gpu(precision):
    """No host sync in a training step, fp16's GradScaler included (the fused SGD takes
    its found-inf flag on the device): CUDA's sync debug mode raises at any."""
    from colabkit.training.epochs import make_optimizer, train_epoch

    if precision == "bf16" and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("bf16 needs sm_80 or newer")
    ds = synthetic(train_size=512, test_size=64)
    loader = DeviceLoader(ds.x_train, ds.y_train, 128, device="cuda", mean=ds.mean, std=ds.std,
                          train=True, seed=1, augment=Augmenter(PRESETS["da"].augment))
    model = build_model("resnet18_cbam", 12, width=16).to("cuda", memory_format=torch.channels_last)
    opt = make_optimizer(model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True,
                         precision=precision)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    train_epoch(model, loader, 1, opt, scaler, precision)  # warm-up: cuDNN, allocator
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss_sum, correct, seen = train_epoch(model, loader, 2, opt, scaler, precision,
                                              lr_at=lambda done: 0.1 * (1 - done))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert seen == 512 and torch.isfinite(loss_sum).item()


def test_cost_measures_the_training_configuration_on_cuda():
    from colabkit.report.inspection import cost
    from colabkit.colab.device import choose_precision

    row = cost(_exp(), 12, "cuda", batch=32, steps=1)
    assert row["precision"] == choose_precision(torch.device("cuda")) and row["channels_last"] is True
    assert row["train_step_peak_mb"] > 0 and row["train_images_per_s"] > 0


def test_background_writer_on_cuda_saves_at_the_last_finished_epoch_on_interrupt(tmp_path, monkeypatch):
    import colabkit.data.loader as loader_mod

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


@pytest.mark.parametrize("name", list(PRESETS))
def test_memory_of_a_training_step_at_batch_128_stays_under_5_gb(name):
    from colabkit.training.epochs import make_optimizer
    from colabkit.training.predict import autocast
    from colabkit.colab.device import choose_precision

    dev = torch.device("cuda")
    prec = choose_precision(dev)
    model = build_model(PRESETS[name].model, 12).to(dev, memory_format=torch.channels_last)
    opt = make_optimizer(model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False,
                         precision=prec)
    scaler = torch.amp.GradScaler("cuda", enabled=prec == "fp16")
    x = torch.randn(128, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 12, (128,), device=dev)
    torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(3):
        with autocast(dev, prec):
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


def _fell_back(out: str) -> None:
    """Below sm_80 (a T4) compiling may fail; the run then goes on eagerly: expected there."""
    if "torch.compile failed" in out:
        line = next(s for s in out.splitlines() if "torch.compile failed" in s)
        if torch.cuda.get_device_capability()[0] < 8:
            pytest.xfail(f"Triton does not support this GPU officially: {line}")
        pytest.fail(f"compiling failed on sm_80 or newer: {line}")


def test_compiled_logits_equal_eager_ones_within_fp16_tolerance():
    from colabkit.training.epochs import CompiledOrEager
    from colabkit.training.predict import autocast

    torch.manual_seed(0)
    model = build_model("resnet18_cbam_aspp", 12, width=16).cuda().eval()
    x = torch.randn(64, 3, 32, 32, device="cuda")
    net = CompiledOrEager(model)
    with torch.no_grad(), autocast(torch.device("cuda"), "fp16"):
        eager, compiled = model(x).float(), net(x).float()
    if net.error:
        _fell_back(f"torch.compile failed ({net.error})")
    torch.testing.assert_close(compiled, eager, rtol=1e-2, atol=1e-2)


def test_compile_on_cuda_trains(tmp_path, capsys):
    res = train(_exp(epochs=1), tmp_path, device="cuda", compile=True, progress=False)
    _fell_back(capsys.readouterr().out)
    assert res["epochs_done"] == 1 and res["final_acc"] > 100 / 12


def test_the_fast_recipe_compiled_on_cuda_trains_and_resumes(tmp_path, capsys):
    from dataclasses import replace

    from colabkit.experiments import with_recipe
    exp = replace(with_recipe(_exp(epochs=2), "fast"), epochs=2)
    train(replace(exp, epochs=1), tmp_path, device="cuda", compile=True, progress=False)
    res = train(exp, tmp_path, device="cuda", compile=True, progress=False)
    _fell_back(capsys.readouterr().out)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert res["epochs_done"] == 2 and res["accuracy"] == "flip TTA"
    assert all(r["test_acc_tta"] is not None for r in rows) and res["final_acc"] > 100 / 12
