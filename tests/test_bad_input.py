"""Bad input from the command line: exit status 2, one line on stderr that says what to
do, no traceback, and the run folder's files byte-identical before and after."""
import json
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from colabkit.__main__ import main

from conftest import write_cifar10, write_image_folder


TINY = ["--dataset", "synthetic", "--width", "4", "--batch-size", "32", "--train-size", "96",
        "--test-size", "48", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A run folder holding a finished one-epoch run of `da`."""
    run = tmp_path_factory.mktemp("template") / "run"
    assert main(["train", "--experiment", "da", "--run-dir", str(run), "--epochs", "1", *TINY]) == 0
    return run


def _snapshot(folder: Path) -> dict:
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _folder_tree(root, **kw):
    write_image_folder(root, n_train=4, n_test=2, **kw)
    return root


def _case_corrupt_targz(tmp):
    src = _folder_tree(tmp / "imgs")
    out = tmp / "imgs.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src / "train", arcname="train")
        tar.add(src / "test", arcname="test")
    out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])  # truncated download
    return ["--dataset", "folder", "--data-root", str(out)]


def _case_not_an_image(tmp):
    root = _folder_tree(tmp / "imgs")
    (root / "train" / "cat" / "notes.png").write_text("not an image")
    return ["--dataset", "folder", "--data-root", str(root)]


def _case_class_only_in_train(tmp):
    root = _folder_tree(tmp / "imgs")
    shutil.rmtree(root / "test" / "emu")
    return ["--dataset", "folder", "--data-root", str(root)]


def _case_labels_out_of_range(tmp):
    root = tmp / "data"
    write_cifar10(root)
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    d = pickle.loads(batch.read_bytes(), encoding="latin1")
    d["labels"][0] = 17
    batch.write_bytes(pickle.dumps(d))
    return ["--dataset", "cifar10", "--data-root", str(root)]


def _case_unwritable_data_root(tmp):
    blocker = tmp / "file"
    blocker.write_text("a file where a folder should be")
    return ["--dataset", "cifar10", "--data-root", str(blocker / "data")]


def _case_damaged_archive(tmp):
    root = tmp / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b half a download")
    return ["--dataset", "cifar10", "--data-root", str(root)]


def _case_other_format(run):
    from colabkit.rundir.checkpoint import CHECKSUM_KEY, content_hash
    state = torch.load(run / "last.pt", weights_only=True)
    state["format"] = 99  # a later colabkit's, with a valid checksum
    state[CHECKSUM_KEY] = content_hash(state)
    torch.save(state, run / "last.pt")
    for p in (run / "last.prev.pt",):
        p.unlink(missing_ok=True)
    return []


def _case_damaged_checkpoint(run):
    raw = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(raw[: len(raw) // 2])
    return []


def _case_lease_held(run):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    from colabkit.colab.lease import Lease, start_ticks
    me = Lease(run / "lease.json").me
    import time
    (run / "lease.json").write_text(json.dumps({**me, "id": "other", "pid": holder.pid,
                                                "start": start_ticks(holder.pid),
                                                "heartbeat_unix": time.time()}))
    return holder


# (name, extra train args or a setup, what the one line must say)
CASES = [
    ("unknown experiment", ["--experiment", "nope"], "invalid choice: 'nope'"),
    # 0 is the recipe's value (as EPOCHS = 0 in a notebook); below it, an error
    ("negative epochs", ["--epochs", "-1"], "--epochs: must be >= 0"),
    ("negative batch", ["--batch-size", "-2"], "--batch-size: must be >= 0"),
    ("batch larger than data", ["--batch-size", "512", "--epochs", "2", "--allow-config-change"],
     "lower the batch size (--batch-size)"),
    ("negative max minutes", ["--max-minutes", "-1"], "--max-minutes: must be > 0"),
    ("negative mirror minutes", ["--mirror-minutes", "-1"], "--mirror-minutes: must be >= 0"),
    ("bad milestones", ["--milestones", "a,b"], "comma-separated list of epochs"),
    ("decreasing milestones", ["--milestones", "200,100", "--epochs", "2"], "--milestones must be increasing"),
    ("negative lr", ["--lr", "-0.1"], "--lr: must be > 0"),
    ("zero width", ["--width", "0"], "--width: must be >= 1"),
    ("negative train size", ["--train-size", "-3"], "--train-size: must be >= 0"),
    ("unknown precision", ["--precision", "fp8"], "invalid choice: 'fp8'"),
    ("cuda without a GPU", ["--device", "cuda", "--epochs", "2"], "no CUDA GPU is visible"),
    ("missing folder", lambda tmp: ["--dataset", "folder", "--data-root", "/nonexistent/imgs"],
     "does not exist: give the data root (--data-root)"),
    ("another dataset for a trained run", ["--dataset", "cifar10", "--epochs", "2"], "another dataset"),
    ("corrupt tar.gz", _case_corrupt_targz, "not a readable .tar.gz"),
    ("non-image file", _case_not_an_image, "cannot read image"),
    ("class only in train", _case_class_only_in_train, "missing from test/: ['emu']"),
    ("labels out of range", _case_labels_out_of_range, "labels out of range"),
    ("unwritable data folder", _case_unwritable_data_root, "could not be downloaded"),
    ("damaged CIFAR archive", _case_damaged_archive, "is damaged: its md5"),
    ("lr changed", ["--lr", "0.5", "--epochs", "2"], "--lr: saved 0.1, now 0.5"),
    ("continue as another network", ["--allow-config-change", "--epochs", "2", "--experiment", "da_cbam"],
     "another model"),
    ("checkpoint of another format", _case_other_format, "checkpoint of another format"),
    ("damaged checkpoint, no previous", _case_damaged_checkpoint, "no checkpoint in"),
    ("lease held", _case_lease_held, "Only if this one should train instead, pass --takeover"),
]


@pytest.mark.parametrize("name,setup,says", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_the_run_folder_as_it_was(template, tmp_path, capsys, name, setup, says):
    run = tmp_path / "run"
    shutil.copytree(template, run)
    args, holder = ["--experiment", "da", "--epochs", "1"], None
    if callable(setup):
        if setup.__name__ in ("_case_other_format", "_case_damaged_checkpoint", "_case_lease_held"):
            extra = setup(run)  # a trained run folder, damaged or held
        else:  # a data problem, met by a run folder that has no finished epoch yet
            shutil.rmtree(run)
            run.mkdir()
            extra = setup(tmp_path)
        if isinstance(extra, subprocess.Popen):
            holder, extra = extra, []
        args += ["--epochs", "2", *extra]
    else:
        args += setup
    before = _snapshot(run)
    try:
        code = main(["train", "--run-dir", str(run), *TINY, *args])
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert says in lines[0] and "Traceback" not in err
    assert _snapshot(run) == before


def test_an_existing_file_as_run_folder_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert main(["train", "--experiment", "basic", "--run-dir", str(blocker), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the run folder {blocker} is a file, not a folder" in err
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("args,says", [
    (["report", "{missing}", "--out", "{out}"], "does not exist: give the folder"),
    (["report", "{runs}", "--out", "{file}"], "is a file: give a folder"),
])
def test_report_errors_are_one_line(template, tmp_path, capsys, args, says):
    f = tmp_path / "afile"
    f.write_text("x")
    fill = {"missing": str(tmp_path / "nope"), "out": str(tmp_path / "o"), "runs": str(template.parent),
            "file": str(f)}
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err


def test_from_python_the_same_errors_name_the_keyword_and_on_the_command_line_the_flag(template, tmp_path):
    """One error, two spellings of its advice, and nothing rewritten after the fact: str()
    is what Python and the notebooks show, cli() what the command line prints."""
    from colabkit import get_experiment, train
    from colabkit.registry import Advice
    from colabkit.training.resume import ConfigMismatch

    with pytest.raises(ValueError) as bad_lr:
        get_experiment("basic", lr=-0.5)
    assert isinstance(bad_lr.value, Advice)
    assert str(bad_lr.value) == "lr must be > 0, got -0.5"
    assert bad_lr.value.cli() == "--lr must be > 0, got -0.5"

    run = tmp_path / "run"
    shutil.copytree(template, run)
    exp = get_experiment("da", dataset="synthetic", width=4, batch_size=32, train_size=96,
                         test_size=48, epochs=1, lr=0.5)
    with pytest.raises(ConfigMismatch) as changed:
        train(exp, run, device="cpu", progress=False)
    python, cli = str(changed.value), changed.value.cli()
    assert "(lr: saved 0.1, now 0.5)" in python and "pass allow_config_change=True to" in python
    assert "(--lr: saved 0.1, now 0.5)" in cli and "pass --allow-config-change to" in cli
    assert "--" not in python and "allow_config_change" not in cli
    assert str(run) in python and str(run) in cli

    with pytest.raises(ValueError) as small:
        train(get_experiment("basic", dataset="synthetic", width=4, batch_size=512, train_size=96,
                             test_size=48, epochs=1), tmp_path / "new", device="cpu", progress=False)
    assert str(small.value).endswith("lower the batch size (batch_size)")
    assert small.value.cli().endswith("lower the batch size (--batch-size)")

