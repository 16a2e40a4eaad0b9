"""colabkit.experiments: the Experiment, its presets, ablations and recipes."""
import dataclasses
import json

import pytest
import torch

from colabkit.data.augment import AugmentSpec
from colabkit.experiments import PRESETS, Experiment, get_experiment

ANGLES = [0.0, 30.0, 330.0, 60.0, 300.0, 90.0, 270.0]


def test_presets_match_design_table():
    expected = {  # the report's table: model, hflip, vflip, rotation weights
        "basic": ("resnet18", 0.5, 0.0, []),
        "da": ("resnet18", 0.5, 0.1, [0.70, 0.08, 0.08, 0.05, 0.05, 0.02, 0.02]),
        # the report's code: 270 degrees is never drawn (its weights as printed sum to 1.01)
        "da_cbam": ("resnet18_cbam", 0.5, 0.1, [0.89, 0.03, 0.03, 0.02, 0.02, 0.01, 0.0]),
        "da_cbam_aspp": ("resnet18_cbam_aspp", 0.5, 0.1, [0.89, 0.03, 0.03, 0.02, 0.02, 0.01, 0.0]),
    }
    assert set(expected) <= set(PRESETS)
    for name, (model, h, v, probs) in expected.items():
        e = PRESETS[name]
        assert (e.name, e.model, e.augment.hflip, e.augment.vflip) == (name, model, h, v)
        assert list(e.augment.rotate_probs) == probs
        assert list(e.augment.rotate_angles) == (ANGLES if probs else [])
        assert e.augment.crop_padding == 0
        assert (e.dataset, e.epochs, e.batch_size, e.lr, e.schedule, e.gamma) == \
            ("cifar12", 300, 128, 0.1, (100, 200), 0.1)
        assert (e.momentum, e.weight_decay, e.width, e.spatial_kernel) == (0.9, 5e-4, 64, 3)


def test_learning_rate_steps_at_the_reports_epochs():
    e = PRESETS["basic"]
    got = {ep: e.lr_at(ep) for ep in (1, 100, 101, 200, 201, 300)}
    assert got[1] == got[100] == 0.1
    assert got[101] == pytest.approx(0.01) and got[200] == pytest.approx(0.01)
    assert got[201] == pytest.approx(0.001) and got[300] == pytest.approx(0.001)


@pytest.mark.parametrize("epochs,steps", [(300, (100, 200)), (30, (10, 20)), (31, (10, 21)),
                                          (3, (1, 2)), (2, (1,)), (1, ())])
def test_without_milestones_the_reports_schedule_is_compressed_to_the_run(epochs, steps):
    e = get_experiment("basic", epochs=epochs)
    assert e.schedule == steps
    lrs = [e.lr_at(ep) for ep in range(1, epochs + 1)]
    assert lrs == [pytest.approx(0.1 * 0.1 ** sum(ep > m for m in steps)) for ep in range(1, epochs + 1)]
    if epochs == 30:
        assert lrs[9] == 0.1 and lrs[10] == pytest.approx(0.01) and lrs[20] == pytest.approx(0.001)
    assert get_experiment("basic", epochs=epochs, milestones=(5,)).schedule == (5,)  # explicit wins


def test_extending_an_automatic_schedule_is_not_a_config_change_but_old_explicit_steps_match():
    short, longer = get_experiment("basic", epochs=30), get_experiment("basic", epochs=60)
    assert "milestones" not in short.diff(longer)
    saved_before = get_experiment("basic", milestones=(100, 200))  # run folders of earlier colabkit
    assert saved_before.diff(get_experiment("basic")) == {}
    assert "milestones" in get_experiment("basic", epochs=30, milestones=(100, 200)).diff(short)


def test_report_weights_of_models_3_and_4_are_what_the_reports_code_drew():
    import random as pyrandom
    # the report's Fig. 5: a uniform draw walked through cumulative thresholds
    rng, counts = pyrandom.Random(0), {a: 0 for a in ANGLES}
    thresholds = [0.89, 0.92, 0.95, 0.97, 0.99, 1.00]
    for _ in range(200_000):
        r = rng.uniform(0, 1)
        counts[next((a for a, t in zip(ANGLES, thresholds) if r < t), ANGLES[-1])] += 1
    spec = PRESETS["da_cbam"].augment
    dist = dict(zip(spec.rotate_angles, spec.rotate_probs))
    for a in ANGLES:
        assert counts[a] / 200_000 == pytest.approx(dist[a], abs=0.002), a


def test_ablations_change_one_thing_against_their_reference():
    from colabkit.experiments import ABLATIONS
    assert sorted(ABLATIONS) == ["basic_crop", "cbam", "da_cbam_spp", "da_light"]
    for name, (ref, _) in ABLATIONS.items():
        diff = PRESETS[name].diff(PRESETS[ref])
        diff.pop("name")
        assert len(diff) == 1, (name, diff)  # model, or augment: one thing
    assert PRESETS["basic_crop"].augment.crop_padding == 4 and PRESETS["da_cbam_spp"].model == "resnet18_cbam_spp"


def test_report_weights_of_models_3_and_4_are_normalized():
    spec = PRESETS["da_cbam"].augment
    dist = dict(zip(spec.rotate_angles, spec.rotate_probs))
    assert sum(dist.values()) == pytest.approx(1.0)
    assert dist[0.0] == pytest.approx(0.89) and dist[270.0] == 0.0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip_gives_an_equal_experiment(name):
    e = get_experiment(name, epochs=7, train_size=100)
    back = Experiment.from_dict(json.loads(json.dumps(e.to_dict())))  # as config.json holds it
    assert back == e and back.augment == e.augment and isinstance(back.augment, AugmentSpec)
    assert back.diff(e) == {}


def test_overrides_and_diff():
    e = get_experiment("da", epochs=2, augment={"hflip": 0.25}, seed=3)
    assert (e.epochs, e.augment.hflip, e.augment.vflip, e.seed) == (2, 0.25, 0.0, 3)
    assert set(PRESETS["da"].diff(e)) == {"epochs", "augment", "seed"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.epochs = 5


def test_unknown_names_and_fields_fail_clearly():
    with pytest.raises(ValueError, match=r"unknown experiment 'resnet'; known: \['basic', 'basic_crop', "
                                         r"'cbam', 'da', 'da_cbam', 'da_cbam_aspp', 'da_cbam_spp', 'da_light'\]"):
        get_experiment("resnet")
    with pytest.raises(ValueError, match=r"unknown Experiment field\(s\) \['epoch'\]"):
        get_experiment("basic", epoch=3)
    with pytest.raises(ValueError, match=r"unknown augmentation key\(s\) \['rotation'\]"):
        get_experiment("basic", augment={"rotation": 30})
    with pytest.raises(ValueError, match="probability in \\[0, 1\\]"):
        AugmentSpec(hflip=1.5)
    with pytest.raises(ValueError, match="same length"):
        AugmentSpec(rotate_angles=(0, 90), rotate_probs=(1.0,))
    with pytest.raises(ValueError, match="milestones must be increasing"):
        get_experiment("basic", milestones=(200, 100))


@pytest.mark.parametrize("kernel", [3, 7])
def test_a_runs_network_is_built_from_all_of_its_fields(kernel):
    """Experiment.network, the one place a run's model is built: its model, its width and
    its CBAM spatial kernel (3 as in the report, 7 as in the CBAM paper), for the classes."""
    from colabkit.models import SpatialAttention

    net = get_experiment("da_cbam_aspp", width=8, spatial_kernel=kernel).network(5)
    convs = [m.conv for m in net.modules() if isinstance(m, SpatialAttention)]
    assert convs and {c.kernel_size for c in convs} == {(kernel, kernel)}
    assert net.conv1.out_channels == 8
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert not any(isinstance(m, SpatialAttention) for m in get_experiment("basic").network(12).modules())
