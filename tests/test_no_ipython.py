"""colabkit without a notebook: a server, a torchrun node or a bare GPU machine has no
IPython and no ipywidgets, and the package must import, train, report and inspect there."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
# None in sys.modules makes `import IPython` raise ImportError, as on a machine without it
BLOCK = "import sys; sys.modules.update(dict.fromkeys(['IPython', 'ipywidgets'], None))\n"
TINY = ["--dataset", "synthetic", "--width", "4", "--batch-size", "32", "--train-size", "64",
        "--test-size", "32", "--device", "cpu", "--quiet", "--epochs", "1"]

SCRIPT = BLOCK + """
import json
from colabkit.__main__ import main
import colabkit
runs, args = sys.argv[1], json.loads(sys.argv[2])
codes = {
    "info": main(["info"]),
    "train": main(["train", "--experiment", "da_cbam", "--run-dir", runs + "/da_cbam", *args]),
    "sweep": main(["sweep", "--experiments", "basic", "--seeds", "0", "--runs-dir", runs, *args]),
    "report": main(["report", runs, "--out", runs + "/../report"]),
    "inspect": main(["inspect", runs + "/da_cbam", "--out", runs + "/../inspect", "--images", "24"]),
    "export": main(["export", runs + "/da_cbam", "--out", runs + "/../export"]),
}
colabkit.show(None)  # the notebook display: nothing to show it on, and no error
blocked = [m for m in ("IPython", "ipywidgets") if sys.modules.get(m) is not None]
print("CODES", json.dumps(codes), "LOADED", json.dumps(blocked))
"""


@pytest.mark.integration
def test_every_command_runs_where_ipython_and_ipywidgets_are_missing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs"), json.dumps(TINY)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("CODES"))
    codes, loaded = line.split(" LOADED ")
    assert json.loads(codes[len("CODES "):]) == dict.fromkeys(
        ["info", "train", "sweep", "report", "inspect", "export"], 0)
    assert json.loads(loaded) == []
    table = pd.read_csv(tmp_path / "report" / "table1.csv")
    assert len(table) == 2  # both runs trained there and were reported
    assert (tmp_path / "inspect" / "attention.png").stat().st_size > 0
    assert (tmp_path / "inspect" / "cost.csv").is_file()


def test_a_shell_without_ipython_is_not_a_notebook_and_live_curves_stay_silent(monkeypatch):
    from colabkit.report.figures import LiveCurves

    monkeypatch.setitem(sys.modules, "IPython", None)
    LiveCurves()({"epoch": 1}, [])  # no ImportError: nothing to draw on


def test_live_curves_still_draw_in_a_notebook(monkeypatch):
    """The display moved inside the function: in a notebook (a ZMQ shell) it still shows."""
    from colabkit.report.figures import LiveCurves

    shown = []
    handle = types.SimpleNamespace(update=lambda image: shown.append(("update", image)))
    display_mod = types.ModuleType("IPython.display")
    display_mod.Image = lambda data: data
    display_mod.display = lambda image, display_id=False: shown.append(("display", image)) or handle
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: type("ZMQInteractiveShell", (), {})()
    ipython.version_info = (8, 30, 0)  # matplotlib reads it when IPython is loaded
    ipython.display = display_mod
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
    row = {"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "test_acc": 40.0}
    curves = LiveCurves()
    curves(row, [row])
    curves({**row, "epoch": 2}, [row, {**row, "epoch": 2}])
    assert [kind for kind, _ in shown] == ["display", "update"]
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for _, png in shown)
