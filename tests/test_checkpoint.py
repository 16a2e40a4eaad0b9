import errno
import os
import random

import numpy as np
import pytest
import torch

from colabkit import checkpoint as ck
from colabkit.checkpoint import (CheckpointError, CheckpointWriter, load_latest, prev_path,
                                 read_checkpoint, rng_state, save_checkpoint, set_rng_state)


def _state(epoch):
    torch.manual_seed(epoch)
    return {"epoch": epoch, "model": {"w": torch.randn(64, 64), "n": torch.tensor(epoch)},
            "history": [{"epoch": i, "test_acc": 50.0 + i} for i in range(1, epoch + 1)],
            "config": {"name": "basic", "milestones": [100, 200]}}


def test_round_trip_loads_with_plain_weights_only_torch_load(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1), path)
    plain = torch.load(path, weights_only=True)
    assert torch.equal(plain["model"]["w"], _state(1)["model"]["w"])
    assert plain[ck.CHECKSUM_KEY] == ck.content_hash(plain)
    assert read_checkpoint(path)["history"] == _state(1)["history"]


def test_previous_checkpoint_is_kept_and_newest_wins(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1), path)
    save_checkpoint(_state(2), path)
    assert prev_path(path).name == "last.prev.pt"
    assert read_checkpoint(prev_path(path))["epoch"] == 1
    assert load_latest(path)["epoch"] == 2


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_byte_in_weights(p):
    raw = bytearray(p.read_bytes())
    # the weights are the largest record: a byte in the middle of the file lands in them
    raw[len(raw) // 2] ^= 0x01
    p.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_truncate, _flip_byte_in_weights, os.unlink])
def test_damaged_or_missing_newest_falls_back_to_previous_with_a_warning(tmp_path, damage):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1), path)
    save_checkpoint(_state(2), path)
    damage(path)
    if path.exists():
        with pytest.warns(UserWarning, match=r"skipping checkpoint: .*last\.pt"):
            state = load_latest(path)
    else:
        state = load_latest(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], _state(1)["model"]["w"])


def test_flipped_byte_loads_silently_in_torch_but_fails_our_checksum(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(3), path)
    _flip_byte_in_weights(path)
    torch.load(path, weights_only=True)  # torch does not notice
    with pytest.raises(CheckpointError, match="fails its checksum"):
        read_checkpoint(path)


def test_no_valid_checkpoint_is_an_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1), path)
    _truncate(path)
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no readable checkpoint"):
        load_latest(path)
    assert load_latest(tmp_path / "none.pt") is None


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "disk is full"), (errno.EIO, "I/O error")])
def test_write_errors_are_clear_and_leave_the_previous_checkpoint_intact(tmp_path, monkeypatch, code, words):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1), path)
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ck.os, "fsync", failing_fsync)
    with pytest.raises(CheckpointError, match=rf"{words}.*previous checkpoint .*last\.pt is intact"):
        save_checkpoint(_state(2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def test_staged_write_for_drive_paths_gives_the_same_file(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(_state(2), a, stage_locally=False)
    save_checkpoint(_state(2), b, stage_locally=True)
    assert read_checkpoint(a)[ck.CHECKSUM_KEY] == read_checkpoint(b)[ck.CHECKSUM_KEY]
    assert ck.is_drive_path(tmp_path) is False


def test_background_writer_writes_in_order_and_reraises_failures(tmp_path, monkeypatch):
    w = CheckpointWriter(background=True)
    done = []
    for e in (1, 2, 3):
        w.submit(_state(e), tmp_path / "last.pt", then=lambda e=e: done.append(e))
    w.wait()
    assert done == [1, 2, 3] and read_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    monkeypatch.setattr(ck.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    w.submit(_state(4), tmp_path / "last.pt")
    with pytest.raises(CheckpointError):
        w.wait()


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1); np.random.seed(2); torch.manual_seed(3)
    save_checkpoint({"epoch": 1, "rng": rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9); np.random.seed(9); torch.manual_seed(9)
    set_rng_state(read_checkpoint(tmp_path / "r.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
