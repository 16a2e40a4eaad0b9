"""colabkit.__main__: the command line, its flags and its one-line errors."""
import json

import torch

from colabkit.__main__ import _parser, main
from colabkit.rundir.runs import read_metrics

TINY = ["--dataset", "synthetic", "--width", "4", "--batch-size", "32", "--train-size", "96",
        "--test-size", "48", "--device", "cpu", "--quiet"]


def test_info_lists_versions_and_experiments(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert torch.__version__ in out and "11,174,988" in out and "da_cbam_aspp" in out


def test_train_then_report_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "runs" / "basic"
    assert main(["train", "--experiment", "basic", "--run-dir", str(run), "--epochs", "2", *TINY]) == 0
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["width"], cfg["train_size"], cfg["epochs"], cfg["dataset"]) == (4, 96, 2, "synthetic")
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    assert "| basic: resnet18 |" in out and (tmp_path / "fig" / "fig12_test_acc.pdf").is_file()


def test_train_ends_with_one_summary_line_or_json_and_resumes(tmp_path, capsys):
    run = tmp_path / "r"
    main(["train", "--experiment", "basic", "--run-dir", str(run), "--epochs", "1", *TINY])
    lines = capsys.readouterr().out.strip().splitlines()
    acc = read_metrics(run / "metrics.csv")[0]["test_acc"]
    assert lines == [f"{run}: finished, 1/1 epochs, best test accuracy {acc:.2f}% (plain) at "
                     f"epoch 1, chosen on test; {lines[0].split('; ')[-1]}"]
    assert lines[0].endswith(" min of training")
    main(["train", "--experiment", "basic", "--run-dir", str(run), "--epochs", "2", "--json", *TINY])
    second = json.loads(capsys.readouterr().out)
    assert second["epochs_done"] == 2 and len(read_metrics(run / "metrics.csv")) == 2
    assert second["best_acc"] == max(r["test_acc"] for r in read_metrics(run / "metrics.csv"))


def test_an_unknown_flag_is_named_with_the_closest_and_underscores_are_taken(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--experiment", "basic", "--run_dir", str(run), "--epohcs", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown flag --epohcs; did you mean --epochs?" in err
    assert not run.exists()
    # underscores for dashes are the same flag; --epochs 0 is the recipe's length, as in notebooks
    assert main(["train", "--experiment", "basic", "--run_dir", str(run), "--epochs=1",
                 "--train_size", "96", *TINY]) == 0
    assert len(read_metrics(run / "metrics.csv")) == 1
    assert main(["train", "--experiment", "basic", "--run-dir", str(run), "--epochs", "0",
                 "--max-minutes", "1e-9", *TINY]) == 0
    assert json.loads((run / "config.json").read_text())["epochs"] == 300
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--outt", str(tmp_path / "o")]) == 2
    assert "unknown flag --outt; did you mean --out?" in capsys.readouterr().err


def test_errors_are_one_clear_line_and_exit_code_2(tmp_path, capsys):
    run = tmp_path / "r"
    main(["train", "--experiment", "basic", "--run-dir", str(run), "--epochs", "1", *TINY])
    capsys.readouterr()
    assert main(["train", "--experiment", "basic", "--run-dir", str(run), "--epochs", "1",
                 "--lr", "0.5", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lr: saved 0.1, now 0.5" in err and "--allow-config-change" in err
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no run folders" in capsys.readouterr().err
    assert main(["train", "--experiment", "nope", "--run-dir", str(run)]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_demo_trains_two_models_and_writes_the_report(tmp_path, capsys):
    assert main(["demo", "--home", str(tmp_path), "--epochs", "1", "--width", "4",
                 "--train-size", "128", "--test-size", "48", "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["demo_basic", "demo_da_cbam"]
    out = capsys.readouterr().out
    table = (tmp_path / "report" / "table1.md").read_text()
    assert table in out  # the table the demo prints is the one it wrote
    for name, model in (("basic", "resnet18"), ("da_cbam", "resnet18_cbam")):
        rows = read_metrics(tmp_path / "runs" / f"demo_{name}" / "metrics.csv")
        assert [r["epoch"] for r in rows] == [1]
        acc = rows[0]["test_acc"]
        assert f"{name}: best test accuracy {acc:.2f}% at epoch 1" in out
        line = next(l for l in table.splitlines() if l.startswith(f"| {name}: {model} |"))
        assert f"| {acc:.3f} | 1 (test) |" in line and "| synthetic | 128 | 4 | 1/1 |" in line


def test_sweep_passes_every_run_flag_to_its_children_as_train_reads_them():
    """``sweep --parallel`` starts ``train`` children with the run flags it was given: parsed
    back by train, each flag has the value sweep parsed, switches included."""
    from colabkit.__main__ import _child_args, _parser

    given = ["--recipe", "fast", "--dataset", "synthetic", "--epochs", "7", "--batch-size", "64",
             "--lr", "0.05", "--milestones", "2,5", "--width", "8", "--train-size", "640",
             "--test-size", "128", "--val-size", "64", "--max-minutes", "30",
             "--checkpoint-minutes", "2.5", "--mirror-minutes", "0", "--takeover",
             "--device", "cpu", "--precision", "bf16", "--compile", "--allow-config-change",
             "--quiet", "--data-root", "/somewhere"]
    parser = _parser()
    swept = parser.parse_args(["sweep", "--experiments", "basic", "--seeds", "0", "--runs-dir", "r",
                               *given])
    child = parser.parse_args(["train", "--experiment", "basic", "--run-dir", "r/basic-s0",
                               *_child_args(swept)])
    flags = {a.dest for a in swept.run_flags} - {"data_root"}  # sweep passes the data root itself
    assert len(flags) == 19 == len(given) - len([g for g in given if not g.startswith("--")]) - 1
    assert {k: getattr(child, k) for k in flags} == {k: getattr(swept, k) for k in flags}
    assert "--data-root" not in _child_args(swept)


def test_the_parser_keeps_its_own_lists_of_flags_and_commands_and_they_are_argparses():
    """The command line reads its flags and subcommands back from its own lists, kept through
    argparse's public calls (argparse holds them in private attributes, which a new Python
    may change). Only this test reads those privates, to check the lists: a flag added
    around the parser's add_argument or its _Group would be missing from them."""
    parser = _parser()
    assert list(parser.commands) == ["info", "demo", "train", "sweep", "report", "inspect", "export",
                                    "tensorboard"]
    for name, command in parser.commands.items():
        theirs = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
        assert command.flags == theirs, name
        assert command.summary and command.summary in " ".join(parser.format_help().split())
    group = parser.commands["train"].parse_args(["--experiment", "basic", "--run-dir", "r"]).run_flags
    assert "--takeover" in [a.option_strings[0] for a in group] and "--experiment" not in group
