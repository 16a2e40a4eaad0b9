"""colabkit.training.epochs: no host sync per training step, in any precision. A read of a device tensor from the
host (``.item()``, ``float(t)``, ``if t:``, ``.cpu()``, ...) makes the CPU wait for the GPU
to finish, every step; on the CPU nothing waits, so here the reads are counted instead:
the Python calls that would sync on a GPU, and the aten calls beneath them
(``_local_scalar_dense`` is what every scalar read becomes; ``nonzero`` has a
data-dependent shape). GradScaler's found-inf check is one such read in fp16 unless the
optimizer takes the scale itself: fused SGD, which fp16 trains with. Through ``train()``
too, with its batch bar drawn: a run of more steps reads no more; and only fp16 builds an
enabled scaler."""
import contextlib
import io
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from colabkit.data.augment import Augmenter
from colabkit.data.sources import synthetic
from colabkit.training.epochs import train_epoch
from colabkit.experiments import PRESETS
from colabkit.data.loader import DeviceLoader
from colabkit.models import build_model
from colabkit.training.epochs import make_optimizer
from colabkit.training.loop import train

READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "nonzero")
SYNCING_OPS = {"_local_scalar_dense", "nonzero", "is_nonzero", "equal"}
STEPS = 4


class AtenReads(TorchDispatchMode):
    """Counts the aten calls that read a tensor's values back to the host."""

    def __init__(self, counts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS:
            self.counts["aten." + name] += 1
        return func(*args, **(kwargs or {}))


def count_reads(monkeypatch, fn):
    """Every host read of a tensor made while ``fn`` runs, by name."""
    counts = Counter()
    for name in READS:
        real = getattr(torch.Tensor, name)

        def counting(self, *a, _real=real, _name=name, **k):
            counts[_name] += 1
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counting)
    real_nonzero = torch.nonzero
    monkeypatch.setattr(torch, "nonzero", lambda *a, **k: counts.update(["torch.nonzero"]) or
                        real_nonzero(*a, **k))
    with AtenReads(counts):
        out = fn()
    monkeypatch.undo()
    return counts, out


def _setup(precision, schedule):
    torch.manual_seed(0)
    ds = synthetic(train_size=32 * STEPS, test_size=8)
    model = build_model("resnet18_cbam", 12, width=4)
    opt = make_optimizer(model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=schedule,
                         precision=precision)
    scaler = torch.amp.GradScaler("cpu", enabled=precision == "fp16")
    loader = DeviceLoader(ds.x_train, ds.y_train, 32, mean=ds.mean, std=ds.std, train=True,
                          seed=1, augment=Augmenter(PRESETS["da"].augment))
    lr_at = (lambda done: 0.1 * (1 - done)) if schedule else None  # a per-step schedule, as the fast recipe
    return model, opt, scaler, loader, lr_at


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("schedule", [False, True], ids=["step-lr", "per-step-lr"])
def test_training_steps_read_nothing_back_to_the_host(monkeypatch, precision, schedule):
    model, opt, scaler, loader, lr_at = _setup(precision, schedule)
    counts, (loss_sum, correct, seen) = count_reads(
        monkeypatch, lambda: train_epoch(model, loader, 1, opt, scaler, precision, lr_at=lr_at))
    assert seen == 32 * STEPS  # the steps ran ...
    assert dict(counts) == {}  # ... and none read a value back
    assert torch.isfinite(loss_sum) and 0 <= int(correct) <= seen
    if precision == "fp16":  # the scaler did its job without a read: a scale was applied
        assert scaler.get_scale() == 2.0 ** 16


def test_the_counter_sees_a_read_per_step(monkeypatch):
    """The counter itself: the unfused optimizer's fp16 step reads found-inf once a step."""
    model, _, scaler, loader, _ = _setup("fp16", False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # not fused
    counts, _ = count_reads(monkeypatch, lambda: train_epoch(model, loader, 1, opt, scaler, "fp16"))
    assert counts["item"] == STEPS and counts["aten._local_scalar_dense"] == STEPS


def test_fused_sgd_takes_the_same_steps_as_the_unfused_one():
    """Fused (fp16) or not, SGD with momentum, weight decay and Nesterov makes the same
    update, up to rounding."""
    torch.manual_seed(0)
    a = build_model("resnet18", 12, width=4)
    b = build_model("resnet18", 12, width=4)
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 12, (8,))
    opts = [make_optimizer(a, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True, precision="fp16"),
            torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)]
    assert opts[0].param_groups[0]["fused"] and not opts[1].param_groups[0]["fused"]
    for _ in range(3):
        for model, opt in zip((a, b), opts):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_the_unfused_optimizer_resumes_fused_in_fp16(tmp_path, tiny):
    """Checkpoints written before the optimizer was fused hold ``fused: None`` in their
    param groups; loading them must not turn the step back to one GradScaler cannot feed."""
    from colabkit.rundir.checkpoint import read_checkpoint, save_checkpoint
    from colabkit.training.loop import train

    exp = tiny(epochs=1)
    train(exp, tmp_path, precision="fp16", progress=False)
    state = read_checkpoint(tmp_path / "last.pt")
    for group in state["optimizer"]["param_groups"]:
        group["fused"], group["foreach"] = None, None  # as torch.optim.SGD(...) saved them
    save_checkpoint(state, tmp_path / "last.pt")
    res = train(tiny(epochs=2), tmp_path, precision="fp16", progress=False)
    assert res["epochs_done"] == 2
    assert read_checkpoint(tmp_path / "last.pt")["optimizer"]["param_groups"][0]["fused"] is True


def test_fp32_and_bf16_keep_the_default_sgd_whose_numbers_earlier_runs_have(tmp_path, tiny):
    """The fused kernel rounds differently: only fp16, whose scaler needs it, takes it; a
    checkpoint of an fp16 run resumed in fp32 steps unfused again."""
    from colabkit.rundir.checkpoint import read_checkpoint
    from colabkit.training.loop import train

    model = build_model("resnet18", 12, width=4)
    for precision in ("fp32", "bf16"):
        opt = make_optimizer(model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False,
                             precision=precision)
        assert not opt.param_groups[0]["fused"]
    train(tiny(epochs=1), tmp_path, precision="fp16", progress=False)
    assert read_checkpoint(tmp_path / "last.pt")["optimizer"]["param_groups"][0]["fused"] is True
    train(tiny(epochs=2), tmp_path, precision="fp32", progress=False)
    assert not read_checkpoint(tmp_path / "last.pt")["optimizer"]["param_groups"][0]["fused"]


def test_fused_sgd_after_a_skipped_first_step_matches_the_unfused_one():
    """A first step that GradScaler skips (overflow at a huge scale) must leave fused SGD's
    momentum buffers as the unfused SGD's: torch's fused kernel left them uninitialized."""
    torch.manual_seed(0)
    models = [build_model("resnet18", 12, width=4) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [make_optimizer(models[0], lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False,
                           precision="fp16"),
            torch.optim.SGD(models[1].parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)]
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 12, (8,))
    start = [p.detach().clone() for p in models[0].parameters()]
    for model, opt in zip(models, opts):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 30)  # the first steps overflow
        for _ in range(20):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        assert scaler.get_scale() < 2.0 ** 30  # it skipped steps ...
    assert not all(torch.equal(a, b) for a, b in zip(start, models[0].parameters()))  # ... and took some
    for p, q in zip(*(m.parameters() for m in models)):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


class _Terminal(io.StringIO):
    """stderr as a terminal: train() draws its batch bar only where a bar redraws."""

    def isatty(self):
        return True


def _train_counting_reads(monkeypatch, tmp_path, tiny, precision, steps):
    """The host reads of a whole one-epoch train() call of ``steps`` steps, both of its
    progress bars on; and what its bars drew."""
    exp = tiny("da", epochs=1, batch_size=32, train_size=32 * steps, test_size=32)
    term = _Terminal()

    def run():
        with contextlib.redirect_stderr(term):
            return train(exp, tmp_path / f"{precision}-{steps}", device="cpu", precision=precision,
                         progress=True)
    counts, res = count_reads(monkeypatch, run)
    assert res["status"] == "finished" and res["epochs_done"] == 1
    return counts, term.getvalue()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_train_with_its_progress_bars_reads_nothing_back_per_step(monkeypatch, tmp_path, tiny,
                                                                  precision):
    """train() itself, with the batch bar it draws in a terminal or a notebook: a run of 6
    steps reads back exactly what a run of 2 does (the epoch's sums, the checkpoint, the
    predictions), so no read is per step, the bar's included (a running loss shown with
    ``loss.item()`` would add one a step)."""
    few, _ = _train_counting_reads(monkeypatch, tmp_path, tiny, precision, 2)
    many, bars = _train_counting_reads(monkeypatch, tmp_path, tiny, precision, 6)
    assert "epoch 1:   0%" in bars and "0/6 [" in bars  # the batch bar was drawn
    assert sum(few.values()) > 0  # the counter is on: the epoch's sums are read once
    assert dict(many) == dict(few)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_train_steps_with_an_enabled_grad_scaler_in_fp16_alone(monkeypatch, tmp_path, tiny, precision):
    """An enabled GradScaler reads its found-inf flag back every step unless the optimizer
    takes it (fp16's fused SGD): fp32 and bf16 must not build one at all. Every scaler train()
    builds and every scaler step it takes are watched, and the checkpoint's scaler state
    says the same: empty (a disabled scaler's) in fp32 and bf16, a scale in fp16."""
    from colabkit.rundir.checkpoint import read_checkpoint

    built, stepped = [], []
    real_init, real_step = torch.amp.GradScaler.__init__, torch.amp.GradScaler.step

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(self)

    def step(self, *args, **kwargs):
        stepped.append(self.is_enabled())
        return real_step(self, *args, **kwargs)
    monkeypatch.setattr(torch.amp.GradScaler, "__init__", init)
    monkeypatch.setattr(torch.amp.GradScaler, "step", step)
    res = train(tiny("basic", epochs=1, batch_size=32, train_size=96, test_size=32), tmp_path / "run",
                device="cpu", precision=precision, progress=False)
    assert res["status"] == "finished"
    scaler = read_checkpoint(tmp_path / "run" / "last.pt")["scaler"]
    if precision == "fp16":
        assert stepped == [True] * 3 and any(s.is_enabled() for s in built)
        assert scaler["scale"] > 0  # a scaler's state, checkpointed
    else:
        assert True not in stepped and not any(s.is_enabled() for s in built)
        assert scaler == {}
