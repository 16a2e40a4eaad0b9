"""The training stages of bench/gpu_check.sh: the data, the pace, runs to the end, more seeds.

    python bench/gpu_runs.py data ARCHIVE --work W
    python bench/gpu_runs.py pace --work W --out OUT [--scale K] -- TRAIN_FLAGS...
    python bench/gpu_runs.py train --work W --out OUT --experiment E [--seed S] -- TRAIN_FLAGS...
    python bench/gpu_runs.py seeds --work W --out OUT --budget-s S [--max-seeds K] -- TRAIN_FLAGS...

Each run is ``python -m colabkit train --recipe fast TRAIN_FLAGS`` (the command a user types),
in a run folder under ``W/runs`` (its checkpoints stay there). A run that finished all its
epochs is collected: its ``metrics.csv``, ``config.json``, ``environment.json`` and
``predictions.npz`` go to ``W/collect/<run>/``, and ``OUT/runs.tar.gz`` (those folders and a
README.md giving the machine, date and commands) is rewritten whole, atomically, so each
finished run is in it the moment it ends: unpacked into ``logs/gpu/``, ``make figures`` draws
them. ``environment.json`` gains ``data`` (the data set in words, ``CIFAR-10`` when the archive
holds CIFAR-10's classes and sizes), which Table 1 uses to label the runs.

``pace`` trains models 1 and 4 for 2 epochs on a slice of the training images, with the whole
validation and test sets, and predicts each full run's seconds from that: the process's own
overhead (start, data, model, checkpoint), the first epoch's warm-up, and per epoch the
training images over the measured images/s plus the measured evaluation. It writes
``OUT/pace.csv`` and ``W/plan.env``, the limits the shell script gives the stages, so that no
stage starts that cannot end. Nothing here is a test: bench/gpu_check.sh --rehearse runs it
on the CPU at tiny sizes (tests/test_gpu_check.py).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEEP = ("metrics.csv", "config.json", "environment.json", "predictions.npz")
MODELS = (("1", "basic"), ("4", "da_cbam_aspp"))  # the report's model 1 and model 4
PACE_EPOCHS = 2
PACE_IMAGES = 12_800  # 50 steps of the fast recipe's batch 256
MARGIN, SLACK_S = 1.3, 20  # a stage's limit: 1.3 x its predicted seconds + 20 s
# dense fp16 tensor-core peak of a T4 (NVIDIA's datasheet; bench/gpu_speed.py's table)
T4_FP16_TFLOPS = 65.0
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ------------------------------------------------------------------ the data ----

def describe_data(classes, n_train: int, n_test: int, archive: str) -> str:
    """The data set in words, for Table 1: ``CIFAR-10`` only for CIFAR-10's ten classes with
    its 50,000 training and 10,000 test images; otherwise what the archive holds."""
    if tuple(classes) == CIFAR10 and (n_train, n_test) == (50_000, 10_000):
        return "CIFAR-10"
    return (f"{Path(archive).name}: {len(classes)} classes, {n_train:,} training and "
            f"{n_test:,} test images")


def cmd_data(args) -> int:
    """Load the archive once (building colabkit's cache beside it, so the runs start fast),
    say what it holds, and keep that in W/data.json for the collector."""
    from colabkit.data.sources import load_dataset

    ds = load_dataset("folder", args.archive)
    info = {"data": describe_data(ds.classes, len(ds.y_train), len(ds.y_test), args.archive),
            "classes": list(ds.classes), "train_images": len(ds.y_train),
            "test_images": len(ds.y_test), "archive": str(args.archive)}
    Path(args.work).mkdir(parents=True, exist_ok=True)
    (Path(args.work) / "data.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    print(f"data: {info['data']} ({ds!r})")
    return 0


# ------------------------------------------------------------------ one run ----

def flag(flags: list[str], name: str, default=None):
    """The last value given to ``name`` in ``flags`` (argparse's rule), else ``default``."""
    value = default
    for i, f in enumerate(flags[:-1]):
        if f == name:
            value = flags[i + 1]
    return value


def run_folder_name(experiment: str, seed: int, epochs: int) -> str:
    """``basic-fast-s0``: as the run folders of logs/recipes; ``-<N>ep`` when not 30 epochs."""
    return f"{experiment}-fast{'' if epochs == 30 else f'-{epochs}ep'}-s{seed}"


def train_command(experiment: str, seed: int, run_dir: Path, flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "colabkit", "train", "--experiment", experiment, "--recipe", "fast",
            *flags, "--seed", str(seed), "--run-dir", str(run_dir)]


def shown(cmd: list[str], work: Path) -> str:
    """The command as a user would type it: python, the archive's and run folder's own names."""
    words = ["python" if w == sys.executable else w for w in cmd]
    return " ".join(w.replace(str(work) + "/runs/", "runs/") for w in words)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run_result(folder: Path) -> dict:
    """What a collected (or finished) run came to, from its files alone: the best epoch as
    Table 1 chooses it (validation accuracy when there is a validation split, flip TTA's
    when the run has TTA), its test accuracy with and without TTA, the seconds trained."""
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    rows = read_rows(folder / "metrics.csv")
    val = any(r.get("val_acc") for r in rows)
    tta = bool(cfg.get("tta"))
    key = ("val" if val else "test") + "_acc" + ("_tta" if tta else "")
    best = max(rows, key=lambda r: (float(r[key]), -int(r["epoch"])))
    return {"run": folder.name, "experiment": cfg["name"], "model": cfg["model"],
            "epochs_done": len(rows), "epochs": cfg["epochs"], "best_epoch": int(best["epoch"]),
            "chosen_on": "validation" if val else "test",
            "test_acc": float(best["test_acc"]),
            "test_acc_tta": float(best["test_acc_tta"]) if tta and best.get("test_acc_tta") else None,
            "final_test_acc": float(rows[-1]["test_acc"]),
            "seconds": sum(float(r["seconds"]) for r in rows)}


def result_line(res: dict) -> str:
    tta = "" if res["test_acc_tta"] is None else f"; with flip TTA {res['test_acc_tta']:.2f}%"
    return (f"{res['run']}: test accuracy {res['test_acc']:.2f}% plain{tta}, at epoch "
            f"{res['best_epoch']}/{res['epochs']} (chosen on {res['chosen_on']}); "
            f"{res['seconds']:.0f} s of epochs")


def collect(run_dir: Path, work: Path, command: str) -> Path:
    """Copy a finished run's four files (no checkpoint) to W/collect/<run>/, with the data
    set in words added to environment.json, and the command that trained it in
    W/commands.json. A run short of its epochs, or without predictions, is refused."""
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    done = len(read_rows(run_dir / "metrics.csv"))
    missing = [n for n in KEEP if not (run_dir / n).is_file()]
    if done != cfg["epochs"] or missing:
        raise RuntimeError(f"{run_dir.name} did not finish ({done}/{cfg['epochs']} epochs; "
                           f"missing: {', '.join(missing) or 'none'}): not collected")
    dest = work / "collect" / run_dir.name
    dest.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        (dest / name).write_bytes((run_dir / name).read_bytes())
    data = json.loads((work / "data.json").read_text(encoding="utf-8"))
    env = json.loads((dest / "environment.json").read_text(encoding="utf-8"))
    env["data"] = data["data"]
    (dest / "environment.json").write_text(json.dumps(env, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    commands_path = work / "commands.json"
    commands = json.loads(commands_path.read_text()) if commands_path.exists() else {}
    commands[run_dir.name] = command
    commands_path.write_text(json.dumps(commands, indent=1), encoding="utf-8")
    return dest


def t4_estimates(speed_csv: Path) -> dict[str, dict]:
    """Per model, the T4's estimated sustained TFLOP/s: the share of its peak that the
    measured GPU reached (fp16 with its GradScaler, the T4's path, eager, batch 256: the fast
    recipe's) times the T4's fp16 peak. An estimate: a T4 is not measured."""
    if not speed_csv.is_file():
        return {}
    out = {}
    for r in read_rows(speed_csv):
        if (r["precision"], r["mode"], r["batch"]) == ("fp16", "eager", "256") and r.get("share_of_peak"):
            share = float(r["share_of_peak"])
            out[r["net"]] = {"share": share, "tflops": share * T4_FP16_TFLOPS,
                             "gflop_per_image": float(r["gflop_per_step"]) / 256,
                             "measured_tflops": float(r["tflops"])}
    return out


def run_gflop(folder: Path, gflop_per_image: float) -> float:
    """A run's training and evaluation GFLOPs: a training image costs a step's share; an
    evaluated image a third of it (the forward pass), twice with flip TTA."""
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    env = json.loads((folder / "environment.json").read_text(encoding="utf-8"))
    evals = ((env.get("val_images") or 0) + env["test_images"]) * (2 if cfg.get("tta") else 1)
    return cfg["epochs"] * gflop_per_image * (env["train_images"] + evals / 3)


def readme(work: Path, speed_csv: Path) -> str:
    """logs/gpu/README.md as the check can write it: the machine, date and commands, each
    run's accuracies, and the T4 estimate (labelled so) where the speed stage measured a GPU."""
    runs = sorted(p for p in (work / "collect").iterdir() if p.is_dir())
    commands = json.loads((work / "commands.json").read_text(encoding="utf-8"))
    env = json.loads((runs[0] / "environment.json").read_text(encoding="utf-8"))
    first = read_rows(runs[0] / "metrics.csv")[0]["time"]
    machine = (f"{env.get('gpu') or 'no GPU (' + str(env.get('device')) + ')'}"
               f"{', %s GB' % env['gpu_memory_gb'] if env.get('gpu_memory_gb') else ''}, "
               f"{env.get('cpu_count')} CPU cores; Python {env.get('python')}, torch {env.get('torch')} "
               f"(CUDA {env.get('cuda')}), precision {env.get('precision')}; colabkit "
               f"{env.get('colabkit')} at commit {(env.get('colabkit_commit') or 'unknown')[:10]}")
    lines = [f"# The GPU check's runs: {env['data']}, the fast recipe, to the end", "",
             "`config.json`, `metrics.csv`, `environment.json` and `predictions.npz` of each "
             "finished run of `bash bench/gpu_check.sh` (checkpoints left out); "
             "`python -m colabkit report logs/gpu --out figures/gpu` (part of `make figures`) "
             "redraws `figures/gpu/` from them.", "",
             f"**What they are not.** {env['data']}, not the report's CIFAR-12 (12 classes); "
             f"{env.get('gpu') or 'a CPU'}, not a T4. Table 1 says so beside them. "
             "`environment.json`'s `data` was added by the check, from the archive it read.", "",
             f"Machine: {machine}. Date: {first[:10]} (first epoch ended {first}).", "",
             f"Command: `{os.environ.get('GPU_CHECK_COMMAND', 'bash bench/gpu_check.sh')}`; each run, "
             "as it ran (its run folder in the check's temporary folder):", "", "```"]
    lines += [commands[p.name] for p in runs] + ["```", "", "| run | test acc. plain (%) | "
              "with flip TTA (%) | best epoch (chosen on) | seconds of epochs | T4 minutes (estimate) |",
              "|---|---:|---:|---|---:|---:|"]
    t4 = t4_estimates(speed_csv)
    results = []
    for p in runs:
        r = run_result(p)
        est = t4.get(r["model"])
        r["t4_min"] = run_gflop(p, est["gflop_per_image"]) / est["tflops"] / 1e3 / 60 if est else None
        results.append(r)
        tta = "–" if r["test_acc_tta"] is None else f"{r['test_acc_tta']:.2f}"
        t4_min = "–" if r["t4_min"] is None else f"{r['t4_min']:.1f}"
        lines.append(f"| {r['run']} | {r['test_acc']:.2f} | {tta} | {r['best_epoch']}/{r['epochs']} "
                     f"({r['chosen_on']}) | {r['seconds']:.0f} | {t4_min} |")
    lines += ["", "The row for README.md's \"Results so far\" (check it before pasting):", "",
              results_row(results, runs[0], first[:10]), ""]
    if t4:
        lines.append("**T4 minutes are an estimate**, not a measurement: each run's FLOPs "
                     "(`torch.utils.flop_counter`'s count of a training step, a third of it per "
                     "evaluated image) over a T4's fp16 peak (65 TFLOP/s) times the share of peak "
                     "this GPU reached in `speed.csv` (fp16 with its GradScaler, eager, batch 256): "
                     + ", ".join(f"{net} {100 * v['share']:.1f}% ({v['measured_tflops']:.1f} TFLOP/s "
                                 f"measured)" for net, v in sorted(t4.items())) + ".")
    else:
        lines.append("No T4 estimate: the speed stage measured no share of a GPU's peak.")
    return "\n".join(lines) + "\n"


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.2f} ± {sd:.2f}"


def results_row(results: list[dict], folder: Path, date: str) -> str:
    """README.md's "Results so far" row for these runs: each experiment's test accuracy
    (flip TTA and plain apart, mean ± sd over seeds), what the runs are and are not (their
    data, not the report's CIFAR-12; their GPU, not a T4), and the T4 estimate labelled so."""
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    env = json.loads((folder / "environment.json").read_text(encoding="utf-8"))
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["experiment"], []).append(r)
    accs, t4 = [], []
    for exp, rs in by.items():
        seeds = f", {len(rs)} seeds" if len(rs) > 1 else ""
        plain = _mean_sd([r["test_acc"] for r in rs])
        if all(r["test_acc_tta"] is not None for r in rs):
            accs.append(f"`{exp}` {_mean_sd([r['test_acc_tta'] for r in rs])}% with flip TTA "
                        f"({plain}% plain{seeds})")
        else:
            accs.append(f"`{exp}` {plain}%{seeds}")
        if all(r["t4_min"] is not None for r in rs):
            t4.append(f"`{exp}` {sum(r['t4_min'] for r in rs) / len(rs):.0f} min")
    width = "full width" if cfg["width"] == 64 else f"width {cfg['width']}"
    val = f" and a {env['val_images']:,}-image validation split" if env.get("val_images") else ""
    where = f"on an {env['gpu']}, not a T4" if env.get("gpu") else "on a CPU, not a T4"
    t4_text = f" (a T4 run, estimated: {', '.join(t4)})" if t4 else ""
    return (f"| The fast recipe to the end: test accuracy {'; '.join(accs)} | {env['data']}, not the "
            f"report's CIFAR-12; {width}, {env['train_images']:,} training images{val}, "
            f"{cfg['epochs']} epochs; {where}{t4_text}; {date} | in [logs/gpu/README.md]"
            f"(logs/gpu/README.md); `make figures` redraws them |")


def pack(work: Path, out: Path) -> Path:
    """OUT/runs.tar.gz: every collected run and the README, rewritten whole and atomically."""
    (work / "collect" / "README.md").write_text(readme(work, out / "speed.csv"), encoding="utf-8")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted((work / "collect").rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(work / "collect")))
    tmp = out / "runs.tar.gz.partial"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out / "runs.tar.gz")
    return out / "runs.tar.gz"


def train_to_end(experiment: str, seed: int, work: Path, out: Path, flags: list[str],
                 timeout: float | None = None) -> dict:
    """One run to the end, collected and packed; its result, also added to OUT/summary.txt."""
    epochs = int(flag(flags, "--epochs", 30))
    run_dir = work / "runs" / run_folder_name(experiment, seed, epochs)
    cmd = train_command(experiment, seed, run_dir, flags)
    print("$", shown(cmd, work), flush=True)
    subprocess.run(cmd, check=True, timeout=timeout)
    dest = collect(run_dir, work, shown(cmd, work))
    pack(work, out)
    res = run_result(dest)
    with open(out / "summary.txt", "a", encoding="utf-8") as f:
        f.write(result_line(res) + "\n")
    print(result_line(res), flush=True)
    return res


def cmd_train(args) -> int:
    train_to_end(args.experiment, args.seed, Path(args.work), Path(args.out), args.flags)
    return 0


# ------------------------------------------------------------------ pace ----

def predict(rows: list[dict], wall_s: float, paced_images: int, train_images: int,
            epochs: int) -> dict:
    """A full run's seconds from a paced run's two epochs (``rows``, ``paced_images``
    training images each) and its wall time: overhead (the process, the data, the model,
    checkpoints) + the first epoch's warm-up + ``epochs`` x (training images / the second
    epoch's images/s + its evaluation's seconds)."""
    s1, s2 = float(rows[0]["seconds"]), float(rows[1]["seconds"])
    ips = float(rows[1]["images_per_s"])
    evaluation = max(0.0, s2 - paced_images / ips)
    epoch = train_images / ips + evaluation
    overhead = max(0.0, wall_s - s1 - s2)
    warm = max(0.0, s1 - s2)
    seconds = overhead + warm + epochs * epoch
    return {"overhead_s": overhead, "warmup_s": warm, "images_per_s": ips, "eval_s": evaluation,
            "epoch_s": epoch, "predicted_s": seconds}


def stage_limit(predicted_s: float, scale: float = 1.0) -> int:
    """The limit a stage is given: ``MARGIN`` x the prediction + ``SLACK_S``, times the
    rehearsal's scale."""
    return math.ceil(scale * (MARGIN * predicted_s + SLACK_S))


def full_run(flags: list[str], data: dict) -> tuple[int, int]:
    """(training images, epochs) of a full run given the training flags: the training split
    less the validation hold-out, or --train-size; --epochs or the fast recipe's 30."""
    n = data["train_images"] - int(flag(flags, "--val-size", 0) or 0)
    size = int(flag(flags, "--train-size", 0) or 0)
    return (min(n, size) if size else n), int(flag(flags, "--epochs", 30) or 30)


def cmd_pace(args) -> int:
    work, out = Path(args.work), Path(args.out)
    data = json.loads((work / "data.json").read_text(encoding="utf-8"))
    n_train, epochs = full_run(args.flags, data)
    paced_images = min(args.pace_images, n_train)
    plan, rows_out = [], []
    for model, experiment in MODELS:
        run_dir = work / "pace" / experiment
        cmd = train_command(experiment, 0, run_dir, [*args.flags, "--epochs", str(PACE_EPOCHS),
                                                     "--train-size", str(paced_images)])
        print("$", shown(cmd, work), flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t
        rows = read_rows(run_dir / "metrics.csv")
        env = json.loads((run_dir / "environment.json").read_text(encoding="utf-8"))
        p = predict(rows, wall, env["train_images"], n_train, epochs)
        limit = stage_limit(p["predicted_s"], args.scale)
        rows_out.append({"model": model, "experiment": experiment, "paced_images": env["train_images"],
                         "wall_s": round(wall, 2), "epoch1_s": rows[0]["seconds"],
                         "epoch2_s": rows[1]["seconds"], "images_per_s": round(p["images_per_s"], 1),
                         "eval_s": round(p["eval_s"], 2), "overhead_s": round(p["overhead_s"], 2),
                         "warmup_s": round(p["warmup_s"], 2), "full_train_images": n_train,
                         "full_epochs": epochs, "epoch_s": round(p["epoch_s"], 2),
                         "predicted_s": round(p["predicted_s"], 1), "limit_s": limit})
        plan += [f"RUN_S_{experiment}={math.ceil(p['predicted_s'])}", f"LIMIT_{experiment}={limit}"]
        write_pace(out / "pace.csv", rows_out, work / "plan.env", plan)  # model 1's, if 4's fails
        print(f"pace: model {model} ({experiment}): {p['images_per_s']:.0f} training images/s, "
              f"{p['eval_s']:.1f} s of evaluation an epoch, {p['overhead_s']:.1f} s of overhead; "
              f"{epochs} epochs of {n_train:,} images predicted {p['predicted_s']:.0f} s, "
              f"limit {limit} s", flush=True)
    return 0


def write_pace(path: Path, rows: list[dict], plan_path: Path, plan: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plan_path.write_text("\n".join(plan) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ seeds ----

def read_plan(work: Path) -> dict[str, int]:
    plan = {}
    path = work / "plan.env"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").split():
            k, _, v = line.partition("=")
            plan[k] = int(v)
    return plan


def seed_order(max_seeds: int) -> list[tuple[int, str]]:
    """Seeds 1, 2, ... of model 1 then model 4, alternating: both get more seeds together."""
    return [(s, e) for s in range(1, max_seeds + 1) for _, e in MODELS]


def cmd_seeds(args) -> int:
    """More seeds of both models while the budget lasts: a run starts only if its limit
    (from the pace) fits in what is left; none that cannot end is started."""
    work, out = Path(args.work), Path(args.out)
    plan = read_plan(work)
    start, ran, failed = time.perf_counter(), 0, 0
    for seed, experiment in seed_order(args.max_seeds):
        limit = plan.get(f"LIMIT_{experiment}")
        left = args.budget_s - (time.perf_counter() - start)
        if limit is None:
            print(f"seeds: no pace for {experiment} (the pace stage failed): not started", flush=True)
            failed += 1
            continue
        if limit > left:
            print(f"seeds: {experiment} seed {seed} not started: its limit is {limit} s, "
                  f"{left:.0f} s left", flush=True)
            continue
        try:
            train_to_end(experiment, seed, work, out, args.flags, timeout=limit)
            ran += 1
        except (subprocess.SubprocessError, RuntimeError, OSError) as e:
            print(f"seeds: {experiment} seed {seed} failed: {e}", flush=True)
            failed += 1
    print(f"seeds: {ran} more run(s) finished, {failed} failed", flush=True)
    if not ran and (work / "collect").is_dir():
        pack(work, out)  # none fitted: the runs so far, packed again (the stage's file)
    return 1 if failed else 0


def cmd_pack(args) -> int:
    """OUT/runs.tar.gz packed again, its README now with the speed table's T4 estimate
    (the runs were packed as each finished, before the speed stage measured it)."""
    work, out = Path(args.work), Path(args.out)
    if not (work / "collect").is_dir():
        print("pack: no finished run to pack", flush=True)
        return 0
    pack(work, out)
    print(f"pack: {out / 'runs.tar.gz'} packed again with the T4 estimate from {out / 'speed.csv'}",
          flush=True)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data")
    d.add_argument("archive")
    d.add_argument("--work", required=True)
    for name in ("pace", "train", "seeds", "pack"):
        s = sub.add_parser(name)
        s.add_argument("--work", required=True)
        s.add_argument("--out", required=True)
        if name == "pace":
            s.add_argument("--scale", type=float, default=1.0, help="the rehearsal's limits x this")
            s.add_argument("--pace-images", type=int, default=PACE_IMAGES)
        if name == "train":
            s.add_argument("--experiment", required=True)
            s.add_argument("--seed", type=int, default=0)
        if name == "seeds":
            s.add_argument("--budget-s", type=float, required=True)
            s.add_argument("--max-seeds", type=int, default=4)
    args = p.parse_args(argv)
    args.flags = flags
    return {"data": cmd_data, "pace": cmd_pace, "train": cmd_train, "seeds": cmd_seeds,
            "pack": cmd_pack}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
