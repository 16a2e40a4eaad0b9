"""Drive's quota, measured where it lives: drive.csv rows at each start, mirror and stop,
the growth beyond the run's own files, and the warning that names the Trash.

The Drive here is simulated: a folder with the Drive policy whose "mount" reports, as
Drive's does, the bytes of live files plus those of every file removed or replaced in it
(they sit in the Trash)."""
import csv
import os
import sys

import pytest

from colabkit.colab import quota
from colabkit.report.status import status_table
from colabkit.training.loop import train

GB = 1_000_000_000
_TRASH = {"root": None, "bytes": 0}


def _audit(event, args):
    """Drive's Trash: what a replace or remove under the simulated Drive drops keeps counting."""
    root = _TRASH["root"]
    if root is None or event not in ("os.rename", "os.remove"):
        return
    victim = str(args[1] if event == "os.rename" else args[0])
    if not victim.startswith(root):
        return
    try:
        _TRASH["bytes"] += os.stat(victim).st_size
    except (OSError, TypeError, ValueError):
        pass


sys.addaudithook(_audit)


@pytest.fixture
def sim_drive(tmp_path, monkeypatch):
    """(Drive folder, extra): the mount reports 5 GB of other files, the live bytes under
    the folder, the Trash, and ``extra["bytes"]`` (what another writer adds)."""
    d = tmp_path / "drive"
    d.mkdir()
    monkeypatch.setenv("COLABKIT_DRIVE", str(d))
    monkeypatch.setenv("COLABKIT_LOCAL", str(tmp_path / "local"))
    _TRASH.update(root=str(d), bytes=0)
    extra = {"bytes": 0}
    monkeypatch.setattr(quota, "usage", lambda path: (
        5 * GB + quota.folder_bytes(d) + _TRASH["bytes"] + extra["bytes"], 15 * GB))
    yield d, extra
    _TRASH.update(root=None, bytes=0)


def _rows(*spec):
    """drive.csv rows from (event, used, run) triples."""
    return [{"time": "t", "event": e, "epoch": i, "used_bytes": u, "total_bytes": 15 * GB,
             "run_bytes": r} for i, (e, u, r) in enumerate(spec)]


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=quota.FIELDS)
        w.writeheader()
        w.writerows(rows)


def test_the_warning_fires_only_past_1_gb_beyond_the_runs_own_files(tmp_path):
    # normal: Drive grew exactly by the run's own files (3 GB of checkpoints)
    normal = _rows(("start", 5 * GB, 0), ("mirror", 7 * GB, 2 * GB), ("stop", 8 * GB, 3 * GB))
    line, warning = quota.stop_report(normal)
    assert warning is None
    assert line.startswith("Drive usage grew by 3.00 GB this session, the run's own files by 3.00 GB")
    # at the line (1 GB beyond) no warning; past it, one naming the Trash and how to empty it
    assert quota.stop_report(_rows(("start", 5 * GB, 0), ("stop", 9 * GB, 3 * GB)))[1] is None
    crafted = _rows(("start", 5 * GB, 0), ("mirror", 7 * GB, GB), ("stop", 9 * GB + 1, 3 * GB))
    _write(tmp_path / "drive.csv", crafted)
    line, warning = quota.stop_report(quota.read_log(tmp_path / "drive.csv"))
    assert "1.00 GB more than this run's own files" in warning
    assert "Trash" in warning and "Empty trash" in warning and "drive.csv" in warning
    # the session is what counts: a jump between sessions (the user's own files) is not the run's
    two = crafted[:1] + [dict(crafted[2], event="stop")] + \
        _rows(("start", 12 * GB, 3 * GB), ("stop", 12 * GB, 3 * GB))
    assert quota.run_growth(two) == GB + 1
    assert quota.stop_report(two)[1] is None  # the last session grew by nothing


def test_a_torn_row_is_skipped_and_a_missing_log_reads_empty(tmp_path):
    path = tmp_path / "drive.csv"
    _write(path, _rows(("start", 5 * GB, 0), ("stop", 6 * GB, GB)))
    with open(path, "a") as f:
        f.write("2026-11-30T00:00:00,mirror,3,12")  # a crash mid-append
    assert [r["event"] for r in quota.read_log(path)] == ["start", "stop"]
    assert quota.read_log(tmp_path / "none.csv") == [] and quota.run_growth([]) is None


def test_a_drive_run_records_each_start_mirror_and_stop_and_costs_no_trash(tiny, sim_drive, capsys):
    d, _ = sim_drive
    run = d / "runs" / "basic"
    # width 12: checkpoints of about 3 MB, replaced at every mirror
    train(tiny("basic", epochs=3, width=12), run, progress=False, mirror_minutes=0)
    rows = quota.read_log(run / "drive.csv")
    assert [r["event"] for r in rows] == ["start", "mirror", "mirror", "mirror", "stop"]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 3]
    assert rows[0]["run_bytes"] < rows[-1]["run_bytes"] and rows[-1]["run_bytes"] > 6_000_000
    # the run's own files on Drive (the stop's row was taken while lease.json was held and
    # drive.csv one row shorter)
    assert rows[-1]["run_bytes"] == pytest.approx(quota.folder_bytes(run), abs=2000)
    assert all(r["total_bytes"] == 15 * GB for r in rows)
    g = quota.session_growth(rows)
    assert 0 <= g["beyond"] < 300_000  # only small files reach the Trash: checkpoints are emptied first
    out = capsys.readouterr().out
    assert f"Drive usage grew by {g['used'] / GB:.2f} GB this session" in out
    # a second session continues the same log from Drive, with a working copy that is new
    import shutil
    shutil.rmtree(d.parent / "local")
    train(tiny("basic", epochs=4, width=12), run, progress=False, mirror_minutes=0)
    rows = quota.read_log(run / "drive.csv")
    assert [r["event"] for r in rows] == ["start", "mirror", "mirror", "mirror", "stop",
                                          "start", "mirror", "stop"]
    table = status_table(d / "runs")
    assert table["drive_growth_gb"].iloc[0] == pytest.approx(quota.run_growth(rows) / GB)


def test_a_session_that_fills_drive_warns_at_the_first_mirror_past_1_gb_and_once(tiny, sim_drive):
    d, extra = sim_drive
    run = d / "runs" / "basic"
    grow = lambda row, history: extra.update(bytes=extra["bytes"] + GB)  # 1 GB per epoch
    # the mirror after epoch 2 sees the first GB (grown after epoch 1's mirror): it warns
    # there, and neither the stop (2 GB) nor a later mirror says it again
    with pytest.warns(UserWarning, match=r"grew by 1\.\d\d GB more than this run's own files.*Trash") as said:
        train(tiny("basic", epochs=2), run, progress=False, mirror_minutes=0, on_epoch=grow)
    assert len([w for w in said if "grew by" in str(w.message)]) == 1
    assert status_table(d / "runs")["drive_growth_gb"].iloc[0] == pytest.approx(2.0, abs=0.01)


def test_a_run_off_drive_keeps_no_drive_log(tiny, tmp_path):
    train(tiny("basic", epochs=1), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "drive.csv").exists()
    assert status_table(tmp_path)["drive_growth_gb"].isna().all()
