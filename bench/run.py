"""colabkit benchmarks, side by side with the report's way, on one machine in one run.

    python bench/run.py [--device cpu|cuda] [--out FILE] [--quick]

Prints a Markdown table headed by the machine, torch version and device:
1. augmentation images/s: colabkit's batched on-device pipeline vs the report's
   (torchvision PIL transforms with its rotation, DataLoader(num_workers=2), batch 128);
2. training images/s per model: a report-style loop (PIL DataLoader, fp32, contiguous)
   vs colabkit's own loop (data on the device, mixed precision where the device has it,
   channels_last on CUDA), same model, batch and device; with peak memory, each model in
   its own process;
3. checkpoint stall: how long a save (and a save with a mirror to a Drive-policy folder)
   blocks training, against an epoch of CIFAR-12; the Drive footprint of a 300-epoch run;
4. resume latency: from calling train() on a run folder with a checkpoint to its first
   training step; and loading a cached data set of CIFAR-12's size.
The table file is rewritten after each section, so a run killed part way keeps the
sections before. ``--quick`` (the GPU check's rehearsal): model 1 alone, small sizes.
Nothing here is a test: numbers vary by machine and are recorded in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from colabkit.data.augment import Augmenter  # noqa: E402
from colabkit.data.sources import Dataset, load_cache, save_cache, synthetic  # noqa: E402
from colabkit.data.loader import DeviceLoader
from colabkit.experiments import PRESETS, get_experiment  # noqa: E402
from colabkit.models import build_model  # noqa: E402
from colabkit.colab.device import choose_precision  # noqa: E402

CIFAR12_TRAIN = 55_000


# --------------------------------------------------------- the report's way ----

class ReportRotation:
    """The report's discrete rotation on a PIL image (torchvision rotate, bilinear)."""

    def __init__(self, angles, weights):
        self.angles, self.weights = list(angles), list(weights)

    def __call__(self, img):
        import torchvision.transforms.functional as TF

        angle = random.choices(self.angles, weights=self.weights)[0]
        return TF.rotate(img, angle, interpolation=TF.InterpolationMode.BILINEAR) if angle else img


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def report_loader(ds: Dataset, spec, batch_size=128, workers=2):
    import torchvision.transforms as T

    tf = [T.RandomHorizontalFlip(spec.hflip)]
    if spec.vflip:
        tf.append(T.RandomVerticalFlip(spec.vflip))
    if spec.rotate_angles:
        tf.append(ReportRotation(spec.rotate_angles, spec.rotate_probs))
    tf += [T.ToTensor(), T.Normalize(ds.mean, ds.std)]
    return torch.utils.data.DataLoader(PILDataset(ds.x_train, ds.y_train, T.Compose(tf)),
                                       batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=False)


def colabkit_loader(ds: Dataset, spec, device, batch_size=128):
    return DeviceLoader(ds.x_train, ds.y_train, batch_size, device=device, mean=ds.mean,
                        std=ds.std, train=True, seed=0, augment=Augmenter(spec))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------ stages ----

def bench_augment(device, n_images):
    ds = synthetic(train_size=n_images, test_size=10)
    spec = PRESETS["da"].augment
    t = time.perf_counter()
    n = 0
    for x, _ in report_loader(ds, spec):
        x = x.to(device, non_blocking=True)
        n += len(x)
    sync(device)
    report = n / (time.perf_counter() - t)
    loader = colabkit_loader(ds, spec, device)
    for _ in loader.epoch(0):  # warm-up (kernels, allocator)
        pass
    sync(device)
    t = time.perf_counter()
    n = 0
    for x, _ in loader.epoch(1):
        n += len(x)
    sync(device)
    ours = n / (time.perf_counter() - t)
    return report, ours


def bench_train_model(name, device, batch_size, steps):
    """Images/s of both loops for one model (run in its own process for peak memory)."""
    from colabkit.training.epochs import make_optimizer, train_epoch

    exp = PRESETS[name]
    n = batch_size * (steps + 1)
    ds = synthetic(train_size=n, test_size=10)
    out = {}
    # report style: PIL DataLoader, fp32, contiguous memory
    torch.manual_seed(0)
    model = build_model(exp.model, 12).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    t = None
    seen = 0
    for i, (x, y) in enumerate(report_loader(ds, exp.augment, batch_size)):
        if i == 1:  # the first step warms up
            sync(device)
            t, seen = time.perf_counter(), 0
        x, y = x.to(device), y.to(device)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        seen += len(y)
    sync(device)
    out["report_ips"] = seen / (time.perf_counter() - t)
    # colabkit: data on the device, AMP where available, channels_last on CUDA
    prec = choose_precision(device)
    torch.manual_seed(0)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = build_model(exp.model, 12).to(device, memory_format=fmt)
    opt = make_optimizer(model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False,
                         precision=prec)
    scaler = torch.amp.GradScaler(device.type, enabled=prec == "fp16")
    loader = colabkit_loader(synthetic(train_size=batch_size, test_size=10), exp.augment, device,
                             batch_size)
    train_epoch(model, loader, 0, opt, scaler, prec)  # warm-up step
    loader = colabkit_loader(ds, exp.augment, device, batch_size)
    loader.x, loader.y = loader.x[: batch_size * steps], loader.y[: batch_size * steps]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t = time.perf_counter()
    _, _, seen = train_epoch(model, loader, 1, opt, scaler, prec)
    sync(device)
    out["colabkit_ips"] = seen / (time.perf_counter() - t)
    out["precision"] = prec
    out["host_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


def _model4_state(device):
    model = build_model("resnet18_cbam_aspp", 12).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32, device=device)).sum().backward()
    opt.step()  # momentum buffers exist, as in a real checkpoint
    return model, opt


def bench_checkpoint(device, epoch_seconds, saves=3):
    """Seconds a save blocks training: written in the loop (CPU default) or copied to
    host memory and written on a background thread (CUDA default); and the same with a
    mirror to a Drive-policy folder in the same job (the local-disk copy cost: a real
    Drive mount adds its own, off the training thread on a GPU)."""
    from colabkit.rundir.checkpoint import CheckpointWriter, save_checkpoint, to_host
    from colabkit.colab.storage import RunStorage

    model, opt = _model4_state(device)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        os.environ["COLABKIT_DRIVE"], os.environ["COLABKIT_LOCAL"] = f"{d}/drive", f"{d}/local"
        storage = RunStorage(Path(d) / "drive" / "run", mirror_minutes=0)
        storage.open()
        for mirror in (False, True):
            for background in (False, True):
                w = CheckpointWriter(background=background)
                times = []
                for epoch in range(1, saves + 1):
                    sync(device)
                    t = time.perf_counter()
                    state = to_host({"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "history": [{"epoch": 1, "test_acc": 1.0}] * 300})

                    def job(state=state, epoch=epoch):
                        save_checkpoint(state, storage.work.last)
                        if mirror:
                            storage.mirror(epoch, force=True)
                    w.submit(job)
                    times.append(time.perf_counter() - t)
                    w.wait()
                res[("mirror " if mirror else "") + ("background" if background else "inline")] = min(times)
        res["size_mb"] = storage.work.last.stat().st_size / 2 ** 20
        storage.close(flush=False)
    res["epoch_s"] = epoch_seconds
    return res


def drive_footprint(presets=tuple(PRESETS)):
    """Drive bytes of a 300-epoch run per model: what stays (last, prev, best and the
    small files), what is written (per mirror: a checkpoint, best.pt when it improved,
    the small files), and what reaches Drive's Trash (only replaced small files: every
    file over 1 MB is emptied before it is replaced). Sizes from real checkpoints."""
    from colabkit.rundir.checkpoint import save_checkpoint, to_host
    from colabkit.rundir.runs import write_metrics

    rows = []
    with tempfile.TemporaryDirectory() as d:
        history = [{"epoch": e, "lr": 0.001, "train_loss": 0.0123456789012, "train_acc": 99.123456789,
                    "test_loss": 0.2345678901234, "test_acc": 94.123456789, "seconds": 31.5,
                    "images_per_s": 1746.0, "time": "2026-11-30T07:00:00+00:00"} for e in range(1, 301)]
        write_metrics(Path(d) / "metrics.csv", history)
        metrics = (Path(d) / "metrics.csv").stat().st_size
        small = metrics + 2_000 + 1_000  # config.json, environment.json (about 1-2 kB each)
        lease = 400
        for name in presets:
            model = build_model(PRESETS[name].model, 12)
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            model(torch.randn(2, 3, 32, 32)).sum().backward()
            opt.step()
            last = Path(d) / f"{name}.pt"
            save_checkpoint(to_host({"epoch": 300, "model": model.state_dict(),
                                     "optimizer": opt.state_dict(), "history": history}), last)
            best = Path(d) / f"{name}.best.pt"
            save_checkpoint({"epoch": 300, "model": model.state_dict()}, best, keep_previous=False)
            ck, bk = last.stat().st_size, best.stat().st_size
            for mirrors in (300, 30):  # every epoch (mirror_minutes=0), and 30 mirrors
                written = mirrors * (ck + bk + small) + 300 * lease
                trash = mirrors * small / 2 + 300 * lease  # metrics.csv grows: half on average
                rows.append((name, mirrors, 2 * ck + bk + small, written, trash))
    return rows


def bench_resume(device, images=55_000):
    """Seconds to load a cached data set of CIFAR-12's size, and from calling train() on a
    run folder holding a ResNet18 checkpoint to its first training step (checkpoint read
    and verified, the data loaded from that cache, model and optimizer restored)."""
    import importlib

    train_mod = importlib.import_module("colabkit.training.loop")  # the module, not the function

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rng = np.random.default_rng(0)
        test = images // 5
        big = Dataset("cifar12", rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 12, images), rng.integers(0, 256, (test, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 12, test), tuple(f"c{i}" for i in range(12)),
                      (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        save_cache(big, d / "colabkit-cifar12.npz")
        del big
        t = time.perf_counter()
        load_cache(d / "colabkit-cifar12.npz", "cifar12")
        cache_s = time.perf_counter() - t
        exp = get_experiment("basic", epochs=2, train_size=128, test_size=128)
        train_mod.train(get_experiment("basic", epochs=1, train_size=128, test_size=128),
                        d / "run", data_root=d, device=device, progress=False)

        class FirstStep(Exception):
            pass

        def first_step(*args, **kwargs):
            raise FirstStep

        real, train_mod.train_epoch = train_mod.train_epoch, first_step
        t = time.perf_counter()
        try:
            train_mod.train(exp, d / "run", data_root=d, device=device, progress=False)
        except FirstStep:
            pass
        finally:
            train_mod.train_epoch = real
        resume_s = time.perf_counter() - t
    return cache_s, resume_s


# -------------------------------------------------------------------- main ----

def machine_line(device):
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {platform.node()} · {os.cpu_count()} CPU "
            f"cores ({cpu}) · {gpu} · torch {torch.__version__} · device {device}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="also write the table to this file (GPU mode: by default "
                                 "bench/results-cuda.md)")
    p.add_argument("--models", default=",".join(PRESETS), help="comma-separated presets")
    p.add_argument("--quick", action="store_true", help="model 1 alone, small sizes (a rehearsal)")
    p.add_argument("--one-model", help=argparse.SUPPRESS)  # internal: child process
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch, steps = (128, 20) if gpu else (32, 2)
    if args.quick:
        batch, steps, args.models = 8, 1, "basic"
    if args.one_model:
        print(json.dumps(bench_train_model(args.one_model, device, batch, steps)))
        return 0

    out = args.out or (REPO / "bench" / f"results-{args.device}.md" if gpu else None)
    written: list[str] = []

    def emit(section: list[str]) -> None:
        """Print a section and rewrite the table file with every section so far."""
        written.extend(section)
        print("\n".join(section), flush=True)
        if out:
            Path(out).write_text("\n".join(written) + "\n", encoding="utf-8")

    lines = ["# colabkit benchmarks", "", machine_line(device), "",
             f"Command: `python bench/run.py --device {args.device}{' --quick' if args.quick else ''}`", ""]
    aug_report, aug_ours = bench_augment(device, 512 if args.quick else 25_600 if gpu else 6_400)
    lines += ["| augmentation (model 2's: flips + rotation), batch 128 | images/s |", "|---|---:|",
              f"| report: torchvision PIL + DataLoader(num_workers=2) | {aug_report:,.0f} |",
              f"| colabkit: batched on {args.device} | {aug_ours:,.0f} |",
              f"| **speed-up** | **{aug_ours / aug_report:.1f}×** |", ""]
    emit(lines)

    rows = [f"| model | report loop img/s | colabkit img/s | speed-up | precision | host peak MB |"
            f"{' GPU peak MB |' if gpu else ''}",
            "|---|---:|---:|---:|---|---:|" + ("---:|" if gpu else "")]
    epoch_s = None
    for name in args.models.split(","):
        proc = subprocess.run([sys.executable, __file__, "--device", args.device, "--one-model", name]
                              + (["--quick"] if args.quick else []), capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{name}: benchmark failed")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        epoch_s = epoch_s or CIFAR12_TRAIN / r["colabkit_ips"]
        rows.append(f"| {name} ({PRESETS[name].model}) | {r['report_ips']:,.1f} | {r['colabkit_ips']:,.1f} | "
                    f"{r['colabkit_ips'] / r['report_ips']:.2f}× | {r['precision']} | {r['host_peak_mb']:,.0f} |"
                    + (f" {r['gpu_peak_mb']:,.0f} |" if gpu else ""))
        print(rows[-1], flush=True)
    emit([f"Training, batch {batch}, {steps} timed steps after a warm-up step, "
          "each model in its own process:", ""] + rows + [""])
    ck = bench_checkpoint(device, epoch_s, saves=1 if args.quick else 3)
    cache_s, resume_s = bench_resume(device, 2_000 if args.quick else 55_000)
    table = ["| checkpoint and resume | seconds | note |", "|---|---:|---|",
              f"| save blocks training (written inline) | {ck['inline']:.3f} | "
              f"{100 * ck['inline'] / ck['epoch_s']:.2f}% of a CIFAR-12 epoch of ResNet18 ({ck['epoch_s']:.0f} s here); "
              f"file {ck['size_mb']:.0f} MB (model 4) |",
              f"| save blocks training (copied to host, written in background) | {ck['background']:.3f} | "
              f"{100 * ck['background'] / ck['epoch_s']:.2f}% of that epoch |",
              f"| save + mirror to a Drive-policy folder, inline | {ck['mirror inline']:.3f} | "
              "the mirror's copy on this disk; a Drive mount is slower |",
              f"| save + mirror, background writer (GPU default) | {ck['mirror background']:.3f} | "
              "the copy runs on the writer's thread |",
              f"| load a cached data set of {'CIFAR-12' if not args.quick else 'a small set'}'s size "
              f"({(55_000 if not args.quick else 2_000) * 6 // 5:,} images) | {cache_s:.2f} | checksum verified |",
              f"| resume: train() to the first training step | {resume_s:.2f} | checkpoint verified, model built |", ""]
    emit(table)
    table = ["Drive footprint of a 300-epoch run (sizes of real checkpoints; upper bounds: "
              "best.pt counted at every mirror):", "",
              "| model | mirrors | on Drive at the end | written to Drive | to Drive's Trash |",
              "|---|---:|---:|---:|---:|"]
    table += [f"| {n} | {m} | {keep / 1e6:,.0f} MB | {w / 1e9:,.1f} GB | {t / 1e6:,.1f} MB |"
              for n, m, keep, w, t in drive_footprint(("basic",) if args.quick else tuple(PRESETS))] + [""]
    emit(table)
    if out:
        print(f"table written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
