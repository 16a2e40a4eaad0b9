"""Looking inside trained runs (colabkit.report.inspection): attention hooks, robustness, cost,
mistakes; and its public name, inspect_run."""
import inspect as stdlib_inspect
import sys
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import colabkit
from colabkit.__main__ import main
from colabkit.data.loader import DeviceLoader
from colabkit.data.sources import synthetic
from colabkit.report.inspection import (TRANSFORMS, AttentionHooks, InspectionError, flops_per_image,
                                 inspect_run, robustness, stage_ends)
from colabkit.models import build_model
from colabkit.rundir.runs import read_metrics
from colabkit.training.loop import train
from conftest import drawn_png



@pytest.fixture(scope="module")
def cbam_run(tmp_path_factory):
    from colabkit.experiments import get_experiment
    run = tmp_path_factory.mktemp("inspect") / "run"
    exp = get_experiment("da_cbam", dataset="synthetic", epochs=2, batch_size=32, width=8,
                         train_size=128, test_size=96)
    train(exp, run, progress=False)
    return run


def test_no_public_name_shadows_a_standard_library_module():
    """``from colabkit import *`` once replaced Python's ``inspect`` module with colabkit's
    function of that name."""
    assert set(colabkit.__all__) & sys.stdlib_module_names == set()
    names: dict = {}
    exec("import inspect\nfrom colabkit import *", names)
    assert names["inspect"] is stdlib_inspect and names["inspect_run"] is inspect_run


def test_the_old_name_inspect_still_works_and_says_to_call_inspect_run():
    assert "inspect_run" in colabkit.__all__ and "inspect" not in colabkit.__all__
    with pytest.warns(DeprecationWarning, match="call inspect_run"):
        assert colabkit.inspect is inspect_run
    with pytest.warns(DeprecationWarning):
        from colabkit import inspect as old
    assert old is inspect_run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'inspekt'"):
            colabkit.inspekt  # noqa: B018 - any other missing name is still an AttributeError


def test_hooks_capture_every_stage_and_leave_the_output_unchanged():
    torch.manual_seed(0)
    model = build_model("resnet18_cbam", 12, width=8).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        with AttentionHooks(model) as hooks:
            hooked = model(x)
    assert torch.equal(plain, hooked)
    assert len(hooks.blocks) == 8 and stage_ends(model) == [1, 3, 5, 7]
    for i, (side, channels) in zip(stage_ends(model), [(32, 8), (16, 16), (8, 32), (4, 64)]):
        assert hooks.spatial[i].shape == (5, 1, side, side)
        assert hooks.channel[i].shape == (5, channels, 1, 1)
        assert 0 <= float(hooks.spatial[i].min()) and float(hooks.spatial[i].max()) <= 1
    # the captured maps are the attention of this input: the formulas of CBAM (Woo et al.)
    # applied to what entered the block's CBAM, taken by a hook of the test's own
    block = hooks.blocks[3]
    seen = []
    handle = block.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    sd = block.state_dict()
    w1, w0 = sd["channel.mlp.0.weight"].flatten(1), sd["channel.mlp.2.weight"].flatten(1)
    f = seen[0]
    mlp = lambda v: torch.clamp(v @ w1.T, min=0) @ w0.T
    channel = torch.sigmoid(mlp(f.mean(dim=(2, 3))) + mlp(f.flatten(2).max(dim=2).values))
    torch.testing.assert_close(hooks.channel[3][:, :, 0, 0], channel, rtol=1e-5, atol=1e-6)
    f1 = f * channel[:, :, None, None]
    maps = torch.stack([f1.mean(dim=1), f1.max(dim=1).values], dim=1)
    spatial = torch.sigmoid(F.conv2d(maps, sd["spatial.conv.weight"], padding=1))
    torch.testing.assert_close(hooks.spatial[3], spatial, rtol=1e-5, atol=1e-6)
    # removed on exit: no hook is left on any module, and another input changes nothing kept
    kept = [t.clone() for t in hooks.spatial + hooks.channel]
    assert not any(m._forward_hooks for b in hooks.blocks for m in (b.channel, b.spatial))
    with torch.no_grad():
        model(torch.randn(5, 3, 32, 32))
    assert all(torch.equal(a, b) for a, b in zip(kept, hooks.spatial + hooks.channel))


def test_inspect_writes_every_figure_and_identity_equals_the_logged_accuracy(cbam_run, tmp_path):
    written = inspect_run(cbam_run, tmp_path)
    names = {p.name for paths in written.values() for p in paths}
    assert {"robustness.csv", "robustness.png", "attention.png", "attention.pdf", "mistakes.png",
            "cost.csv"} <= names
    table = pd.read_csv(tmp_path / "robustness.csv")
    assert list(table["transform"]) == ["identity", "hflip", "vflip", "rot30", "rot60", "rot90",
                                        "rot270", "rot300", "rot330"]
    state = torch.load(cbam_run / "best.pt", weights_only=True)
    rows = read_metrics(cbam_run / "metrics.csv")
    logged = next(r["test_acc"] for r in rows if r["epoch"] == state["epoch"])
    assert table["accuracy"].iloc[0] == pytest.approx(logged)
    # and an independent evaluation through the training loader
    from colabkit.experiments import Experiment
    cfg = Experiment.from_dict(state["config"])
    data = synthetic(seed=0).subset(None, cfg.test_size, cfg.seed)
    model = build_model(cfg.model, 12, width=cfg.width)
    model.load_state_dict(state["model"])
    model.eval()
    loader = DeviceLoader(data.x_test, data.y_test, 50, mean=data.mean, std=data.std)
    with torch.no_grad():
        right = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader.epoch(0))
    assert table["accuracy"].iloc[0] == pytest.approx(100 * right / len(data.y_test))
    cost = pd.read_csv(tmp_path / "cost.csv").iloc[0]
    assert cost["parameters"] == sum(p.numel() for p in model.parameters()) and cost["gflops_per_image"] > 0


class _FlipInvariant(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.g = build_model("resnet18", 12, width=4).eval()

    def forward(self, x):
        return self.g(x) + self.g(x.flip(3))


def test_a_model_invariant_to_horizontal_flips_scores_the_same_under_flip():
    data = synthetic(seed=0).subset(None, 120, 0)
    with torch.no_grad():
        table = robustness(_FlipInvariant(), data, torch.device("cpu")).set_index("transform")
        plain = robustness(build_model("resnet18", 12, width=4).eval(), data, torch.device("cpu"))
    assert table.loc["hflip", "accuracy"] == table.loc["identity", "accuracy"]
    assert len(plain) == 9
    # the same on the logits, and not for the other transforms
    from colabkit.report.inspection import under
    model, cpu = _FlipInvariant(), torch.device("cpu")
    ident = under(model, data, cpu).logits
    assert torch.equal(under(model, data, cpu, "hflip").logits, ident)
    assert not torch.allclose(under(model, data, cpu, "vflip").logits, ident)


def test_transforms_are_the_flips_and_rotations_they_name():
    from colabkit.report.inspection import transform
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(transform(x, "hflip"), x.flip(3)) and torch.equal(transform(x, "vflip"), x.flip(2))
    assert torch.equal(transform(x, "rot90"), torch.rot90(x, 1, (2, 3)))  # counter-clockwise
    assert torch.equal(transform(x, "rot270"), torch.rot90(x, 3, (2, 3)))
    assert torch.equal(transform(x, "identity"), x)


def test_flop_count_matches_a_hand_count_for_a_small_conv_net():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 32 * 32, 10))
    conv = 2 * (8 * 32 * 32) * (3 * 3 * 3)  # a multiply and an add per weight per output
    linear = 2 * (8 * 32 * 32) * 10
    assert flops_per_image(net, torch.device("cpu")) == conv + linear


def test_damaged_best_falls_back_and_says_so_and_an_empty_folder_fails_clearly(cbam_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(cbam_run, run)
    raw = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.warns(UserWarning, match=r"best\.pt cannot be read.*inspecting last\.pt \(epoch 2\)"):
        inspect_run(run, tmp_path / "out", images=32)
    assert (tmp_path / "out" / "robustness.csv").is_file()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InspectionError, match="holds no checkpoint"):
        inspect_run(tmp_path / "empty", tmp_path / "o2")
    assert main(["inspect", str(tmp_path / "empty"), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no checkpoint" in err


def test_report_inspect_draws_all_runs_side_by_side(cbam_run, tmp_path):
    from colabkit.report.write import write_report
    written = write_report(cbam_run.parent, tmp_path, inspect=True)
    assert tmp_path / "robustness_all.png" in written["robustness_all"]
    assert tmp_path / "inspect" / "run" / "attention.png" in written["inspect_run"]
    every = pd.read_csv(tmp_path / "robustness_all.csv")
    one = pd.read_csv(tmp_path / "inspect" / "run" / "robustness.csv")
    assert list(every["transform"]) == list(TRANSFORMS) and set(every["run"]) == {"run"}
    assert list(every["accuracy"]) == list(one["accuracy"])
    state = torch.load(cbam_run / "best.pt", weights_only=True)
    logged = next(r["test_acc"] for r in read_metrics(cbam_run / "metrics.csv") if r["epoch"] == state["epoch"])
    assert every["accuracy"].iloc[0] == pytest.approx(logged)  # identity: the logged accuracy
    drawn_png(tmp_path / "robustness_all.png", None)


@pytest.mark.parametrize("precision,dtype", [("auto", torch.float32), ("bf16", torch.bfloat16),
                                             ("fp16", torch.float16)])
def test_cost_measures_the_step_training_takes(monkeypatch, precision, dtype):
    """Autocast in the training precision (auto: as train chooses; fp32 on the CPU), the
    training step's code and its optimizer (fused in fp16): what the first convolution
    computes in."""
    import colabkit.training.epochs as epochs_mod
    import colabkit.report.inspection as inspection_mod
    from colabkit.experiments import get_experiment

    from colabkit.experiments import Experiment

    seen, fused = [], []
    real_build, real_make = Experiment.network, inspection_mod.make_optimizer

    def build(self, num_classes):
        model = real_build(self, num_classes)
        model.conv1.register_forward_hook(lambda m, i, o: seen.append((m.training, o.dtype)))
        return model

    def make(*args, **kwargs):
        opt = real_make(*args, **kwargs)
        fused.append(bool(opt.param_groups[0]["fused"]))
        return opt
    monkeypatch.setattr(Experiment, "network", build)
    monkeypatch.setattr(inspection_mod, "make_optimizer", make)
    steps = []
    real_step = epochs_mod.forward_backward
    monkeypatch.setattr(inspection_mod, "forward_backward",
                        lambda *a, **k: steps.append(a[5]) or real_step(*a, **k))
    row = inspection_mod.cost(get_experiment("basic", width=4), 12, "cpu", batch=4, steps=2,
                              precision=precision)
    assert row["precision"] == ("fp32" if precision == "auto" else precision)
    assert row["channels_last"] is False  # the CPU trains contiguous (channels_last on CUDA)
    train_dtypes = {d for training, d in seen if training}
    assert train_dtypes == {dtype} and steps == [row["precision"]] * 3
    assert fused == [row["precision"] == "fp16"]
    assert {d for training, d in seen if not training} >= {dtype}  # inference too
