"""colabkit.registry's Advice, and every error built with it (experiments, resume, loader,
storage, data, lease, runtime): a message is built once for Python and once for the command
line, never formatted a second time, so a brace in a path or a value is only a brace."""
import os
import time

import numpy as np
import pytest
import torch

from colabkit.data.archives import DataError
from colabkit.data.sources import build_folder, synthetic
from colabkit.experiments import get_experiment
from colabkit.colab.lease import Lease, LeaseHeld, start_ticks
from colabkit.data.loader import DeviceLoader
from colabkit.registry import Advice, SettingError, setting
from colabkit.training.resume import CHECKPOINT_FORMAT, ConfigMismatch, check_config
from colabkit.rundir.runs import RunDir, write_json
from colabkit.colab.device import DeviceError, choose_device
from colabkit.colab.storage import RunStorage

# each breaks str.format its own way: KeyError, IndexError, ValueError ("Single '}'")
BRACES = ["{x}", "{}", "a}b{c"]


def _both(error: Advice) -> tuple[str, str]:
    return str(error), error.cli()


def test_a_message_names_each_setting_as_python_and_the_command_line_spell_it():
    e = SettingError(lambda lr: f"{lr} must be > 0, got '{{x}}'", lr=setting("lr"))
    assert _both(e) == ("lr must be > 0, got '{x}'", "--lr must be > 0, got '{x}'")
    assert _both(Advice("no setting named: {x}")) == ("no setting named: {x}",) * 2


def test_a_template_with_settings_is_refused_where_it_is_written():
    """The old way, ``Advice("{lr} ...", lr=...)``, formatted text holding user values."""
    with pytest.raises(TypeError, match="function of the settings' words"):
        Advice("{lr} must be > 0", lr=setting("lr"))


@pytest.mark.parametrize("value", BRACES)
def test_a_setting_whose_value_holds_braces_is_named_verbatim(value):
    with pytest.raises(SettingError) as e:
        get_experiment("basic", epochs=value)
    python, cli = _both(e.value)
    assert python == f"epochs must be a whole number >= 1, got {value!r}"
    assert cli == f"--epochs must be a whole number >= 1, got {value!r}"


def _state(exp, epochs_trained=1):
    return {"format": CHECKPOINT_FORMAT, "config": exp.to_dict(),
            "history": [{"epoch": e} for e in range(1, epochs_trained + 1)]}


@pytest.mark.parametrize("name", BRACES)
def test_a_run_folder_whose_path_holds_braces_is_named_verbatim_by_every_refusal(tmp_path, name, capsys):
    run = RunDir(tmp_path / name)
    exp = get_experiment("basic", dataset="synthetic", epochs=30, width=4)
    # another network: refused even when asked
    with pytest.raises(ConfigMismatch) as shape:
        check_config(_state(exp), get_experiment("da_cbam", dataset="synthetic", epochs=30, width=4),
                     run, allow_change=True, main=True)
    # another learning rate: refused unless asked
    with pytest.raises(ConfigMismatch) as lr:
        check_config(_state(exp), get_experiment("basic", dataset="synthetic", epochs=30, width=4,
                                                 lr=0.5), run, allow_change=False, main=True)
    # another length that moves the schedule under epochs trained: refused, or a note
    longer = get_experiment("basic", dataset="synthetic", epochs=60, width=4)
    with pytest.raises(ConfigMismatch) as length:
        check_config(_state(exp, 15), longer, run, allow_change=False, main=True)
    capsys.readouterr()
    check_config(_state(exp, 15), longer, run, allow_change=True, main=True)
    note = capsys.readouterr().out
    for error, says in ((shape, "holds a run with another model"),
                        (lr, "holds a run with another configuration"),
                        (length, "was planned for 30 epochs and has trained 15")):
        for text in _both(error.value):
            assert text.startswith(f"{run.path} {says}")
    assert "--allow-config-change" in lr.value.cli() and "--epochs 30" in length.value.cli()
    assert note.startswith(f"Note: {run.path} was planned for 30 epochs")


@pytest.mark.parametrize("name", BRACES)
def test_a_data_root_whose_path_holds_braces_is_named_verbatim(tmp_path, name):
    root = tmp_path / name / "images"
    with pytest.raises(DataError) as e:
        build_folder(root)
    python, cli = _both(e.value)
    assert python.startswith(f"{root} does not exist: give the data root (data_root)")
    assert cli.startswith(f"{root} does not exist: give the data root (--data-root)")


def _foreign(path, **holder):
    me = Lease(path).me
    write_json(path, {**me, "id": "someone-else", "heartbeat_unix": time.time(), **holder})


@pytest.mark.parametrize("name", BRACES)
def test_a_held_folder_whose_path_holds_braces_is_named_verbatim(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    lease = folder / "lease.json"
    parent = os.getppid()  # alive, on this machine, not this process
    _foreign(lease, pid=parent, start=start_ticks(parent))
    with pytest.raises(LeaseHeld) as here:
        Lease(lease).acquire()
    _foreign(lease, host="other-vm", pid=1)
    with pytest.raises(LeaseHeld) as elsewhere:
        Lease(lease).acquire()
    for error, says in ((here, "is being trained right now"), (elsewhere, "was being trained")):
        python, cli = _both(error.value)
        assert python.startswith(f"{folder} {says}") and cli.startswith(f"{folder} {says}")
        assert "tick TAKEOVER (takeover=True)" in python and "pass --takeover" in cli


def test_messages_of_numbers_name_their_setting_once_formatted():
    with pytest.raises(SettingError) as mirror:
        RunStorage("{x}", mirror_minutes=-1)
    assert _both(mirror.value) == ("mirror_minutes must be >= 0, got -1",
                                   "--mirror-minutes must be >= 0, got -1")
    x, y = np.zeros((3, 32, 32, 3), np.uint8), np.zeros(3, np.int64)
    with pytest.raises(SettingError) as batch:
        DeviceLoader(x, y, 8, train=True)
    assert batch.value.cli().endswith("fewer than one batch of 8: lower the batch size (--batch-size)")
    data = synthetic(train_size=24, test_size=12)
    with pytest.raises(SettingError) as held:
        data.holdout(24)
    assert _both(held.value) == ("val_size must be between 1 and 23 (the training split has 24 "
                                 "images), got 24", "--val-size must be between 1 and 23 (the "
                                 "training split has 24 images), got 24")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_gpu_names_the_cpu_setting():
    with pytest.raises(DeviceError) as e:
        choose_device("cuda")
    assert "use device='cpu'" in str(e.value) and "use --device cpu" in e.value.cli()
