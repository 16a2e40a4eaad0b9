"""colabkit.rundir.checkpoint, colabkit.rundir.files: checkpoints that verify, written whole or not at all."""
import errno
import os
import re
import warnings

import pytest
import torch

from colabkit.rundir import checkpoint as ck
from colabkit.rundir.checkpoint import (CheckpointError, CheckpointWriter, find_latest, read_checkpoint, save_checkpoint)
from colabkit.rundir.files import prev_path


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
    assert find_latest(path)[0]["epoch"] == 2


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
            state = find_latest(path)[0]
    else:
        state = find_latest(path)[0]
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
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error says it all: no warning before it
        with pytest.raises(CheckpointError) as e:
            find_latest(path)[0]
    msg = str(e.value)
    assert re.search(r"no checkpoint in .* verifies; found .*last\.pt \(\d+ bytes\)", msg)
    assert "Nothing was changed" in msg and not re.search(r"aside|delete|remove", msg)
    assert path.stat().st_size > 0  # the damaged file is still there
    assert find_latest(tmp_path / "none.pt")[0] is None


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


def test_background_writer_writes_in_order_and_reraises_failures(tmp_path, monkeypatch):
    w = CheckpointWriter(background=True)
    done = []
    for e in (1, 2, 3):
        w.submit(lambda e=e: (save_checkpoint(_state(e), tmp_path / "last.pt"), done.append(e)))
    w.wait()
    assert done == [1, 2, 3] and read_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    monkeypatch.setattr(ck.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    w.submit(lambda: save_checkpoint(_state(4), tmp_path / "last.pt"))
    with pytest.raises(CheckpointError):
        w.wait()


class _Killed(BaseException):
    """Stands for SIGKILL inside a test: nothing after it runs."""


def _verifying(path):
    n = 0
    for p in ck.candidates(path):
        try:
            read_checkpoint(p)
            n += 1
        except CheckpointError:
            pass
    return n


def _watch(monkeypatch, path, counts, kill_at=None):
    """Before every rename and truncation, count the versions of ``path`` that verify;
    raise _Killed at step ``kill_at``."""
    for name in ("replace", "truncate"):
        real = getattr(os, name)

        def step(*args, _real=real, **kwargs):
            counts.append(_verifying(path))
            if len(counts) == kill_at:
                raise _Killed
            return _real(*args, **kwargs)
        monkeypatch.setattr(os, name, step)


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4])
def test_two_checkpoints_verify_at_every_instant_even_across_a_kill(tmp_path, monkeypatch, kill_at):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1), path)
    save_checkpoint(_state(2), path)
    counts = []
    _watch(monkeypatch, path, counts, kill_at)
    with pytest.raises(_Killed):
        save_checkpoint(_state(3), path)  # killed at step kill_at of the install
    monkeypatch.undo()
    assert min(counts) >= 2 and _verifying(path) >= 2, counts
    newest = find_latest(path)[0]["epoch"]
    assert newest == (2 if kill_at == 1 else 3)  # the new one counts once it has a name
    ck.finish_install(path)  # the next start completes what the kill interrupted
    assert not ck.next_path(path).exists() and find_latest(path)[0]["epoch"] == newest
    counts = []
    _watch(monkeypatch, path, counts)
    save_checkpoint(_state(4), path)
    monkeypatch.undo()
    assert min(counts) >= 2 and read_checkpoint(path)["epoch"] == 4
    assert read_checkpoint(prev_path(path))["epoch"] == newest
