"""Weights in one line: export a run's best weights with a model card, serve them over
HTTP on the loopback interface, and load them through torch.hub from this repository."""
import hashlib
import http.server
import re
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from colabkit import weights
from colabkit.__main__ import main
from colabkit.data.sources import load_dataset
from colabkit.models import build_model
from colabkit.rundir.runs import read_json, read_predictions
from colabkit.training.loop import train
from conftest import independent_predictions


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small run of the report's model 4 with a validation split, and its test data."""
    from colabkit.experiments import get_experiment

    run = tmp_path_factory.mktemp("run") / "da_cbam_aspp"
    exp = get_experiment("da_cbam_aspp", dataset="synthetic", epochs=2, batch_size=32, width=4,
                         train_size=128, test_size=64, val_size=32, milestones=(1,))
    train(exp, run, progress=False)
    data = load_dataset("synthetic", seed=0).holdout(32, 0).subset(None, 64, 0)
    return run, data


@pytest.fixture
def server(tmp_path):
    """A static file server on 127.0.0.1 over a fresh folder; stops at the end of the test."""
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/assets"
    httpd.shutdown()
    httpd.server_close()


def _logits(model, data):
    x = torch.from_numpy(data.x_test).float().div(255).permute(0, 3, 1, 2)
    x = (x - torch.tensor(data.mean).view(1, 3, 1, 1)) / torch.tensor(data.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.eval()(x.float())


def test_export_names_the_file_by_its_digest_and_writes_a_model_card(trained, tmp_path):
    run, _ = trained
    done = weights.export(run, tmp_path / "out")
    best = torch.load(run / "best.pt", weights_only=True)
    raw = done["weights"].read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    assert done["weights"].name == f"da_cbam_aspp-{digest[:10]}.pt" and done["sha256"] == digest
    # torch.hub's own rule for the digits it checks
    assert torch.hub.HASH_REGEX.search(done["weights"].name).group(1) == digest[:10]
    state = torch.load(done["weights"], weights_only=True)
    assert state.keys() == best["model"].keys()
    assert all(torch.equal(state[k], best["model"][k]) for k in state)
    card = done["card"].read_text()
    env = read_json(run / "environment.json")
    assert done["card"].name == "da_cbam_aspp.md" and done["weights"].name in card and digest in card
    n_params = sum(v.numel() for v in build_model("resnet18_cbam_aspp", 12, width=4).parameters())
    for fact in ("`resnet18_cbam_aspp`, width 4", f"{n_params:,} parameters", "`report`",
                 "`synthetic`, 12 classes", "2 trained; these weights are from epoch "
                 f"{best['epoch']}", "| seed | 0", f"{best['test_acc']:.3f}%",
                 "validation split of 32", f"torch {env['torch']}", f"Python {env['python']}",
                 "no terms beyond colabkit's MIT"):
        assert fact in card, fact
    assert done["registry"] == (f'"da_cbam_aspp": Release("{done["weights"].name}", tag='
                                f'"{weights.RELEASE_TAG}", num_classes=12, test_acc={best["test_acc"]}),')
    # the same weights, the same bytes: an export is reproducible
    assert weights.export(run, tmp_path / "again")["weights"].read_bytes() == raw


def test_hub_load_over_http_gives_the_runs_own_logits_and_a_flipped_byte_fails(
        trained, server, tmp_path, monkeypatch):
    run, data = trained
    root, url = server
    done = weights.export(run, root / "assets")
    monkeypatch.setenv(weights.URL_ENV, url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached download
    monkeypatch.setitem(weights.RELEASED, "da_cbam_aspp", weights.Release(done["weights"].name))
    model = torch.hub.load(str(REPO), "da_cbam_aspp", source="local", pretrained=True,
                           width=4, progress=False)
    state = torch.load(run / "best.pt", weights_only=True)
    own = build_model("resnet18_cbam_aspp", 12, width=4)
    own.load_state_dict(state["model"])
    assert torch.equal(_logits(model, data), _logits(own, data))
    assert np.array_equal(_logits(model, data).argmax(1).numpy(), independent_predictions(state, data))
    assert np.array_equal(read_predictions(run / "predictions.npz")["pred"],
                          _logits(model, data).argmax(1).numpy())
    # one flipped byte in the served file: the hash check refuses it, nothing is cached
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home-2"))
    raw = bytearray(done["weights"].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    done["weights"].write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="invalid hash value"):
        torch.hub.load(str(REPO), "da_cbam_aspp", source="local", pretrained=True, width=4,
                       progress=False)
    cached = tmp_path / "torch-home-2" / "hub" / "checkpoints"
    assert not cached.exists() or not any(cached.iterdir())


def test_pretrained_without_released_weights_says_so_in_one_line_naming_the_notebook(monkeypatch):
    monkeypatch.setattr(weights, "RELEASED", {})
    with pytest.raises(weights.WeightsError) as e:
        torch.hub.load(str(REPO), "da_cbam", source="local", pretrained=True)
    assert "\n" not in str(e.value)
    assert "no released weights for 'da_cbam'" in str(e.value)
    assert "notebooks/03_resnet18_da_cbam.ipynb" in str(e.value) and (REPO / "notebooks/03_resnet18_da_cbam.ipynb").is_file()
    with pytest.raises(weights.WeightsError, match=r"'cbam_fast'.*--experiment cbam --recipe fast"):
        weights.hub_model("cbam", pretrained=True, recipe="fast")
    # without weights: the preset's network, as build_model makes it
    model = torch.hub.load(str(REPO), "da_cbam_aspp", source="local")
    assert sum(p.numel() for p in model.parameters()) == 14_410_972


def test_a_release_of_another_class_count_builds_that_head(server, tmp_path, monkeypatch):
    """A release records its classes (an image-folder run of 3, say): the hub builds that
    head, and the preset's own architecture around it."""
    root, url = server
    net = build_model("resnet18_cbam", 3, width=4)
    (root / "assets").mkdir()
    raw = root / "assets" / "tmp.pt"
    torch.save(net.state_dict(), raw)
    name = f"cbam3-{hashlib.sha256(raw.read_bytes()).hexdigest()[:10]}.pt"
    raw.rename(root / "assets" / name)
    monkeypatch.setenv(weights.URL_ENV, url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setitem(weights.RELEASED, "cbam", weights.Release(name, num_classes=3))
    model = weights.hub_model("cbam", pretrained=True, width=4, progress=False)
    assert model.head.fc.out_features == 3
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), net.eval()(x))


def test_every_preset_has_a_hub_entry_and_nothing_else_is_one():
    import hubconf

    entries = sorted(f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_"))
    assert entries == sorted(weights.PRESETS)
    for name in entries:
        model = getattr(hubconf, name)(width=4)
        cfg = weights.PRESETS[name]
        ref = build_model(cfg.model, 12, width=4, attention_kwargs={"kernel_size": cfg.spatial_kernel})
        assert [p.shape for p in model.parameters()] == [p.shape for p in ref.parameters()], name


def test_export_from_the_command_line_and_its_bad_input(trained, tmp_path, capsys):
    run, _ = trained
    assert main(["export", str(run), "--out", str(tmp_path / "cli"), "--name", "model4_try"]) == 0
    out = capsys.readouterr().out
    written = re.search(r"wrote (\S+\.pt) and (\S+\.md)", out)
    assert Path(written.group(1)).name.startswith("model4_try-") and Path(written.group(2)).name == "model4_try.md"
    assert '"model4_try": Release(' in out
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.json").write_text((run / "config.json").read_text())
    assert main(["export", str(empty), "--out", str(tmp_path / "x")]) == 2
    assert "no best.pt yet" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["export", str(run), "--out", str(tmp_path / "y"), "--name", "a-b"]) == 2
    assert "letters, digits and _" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "z")]) == 2
    assert "not a run folder" in capsys.readouterr().err
