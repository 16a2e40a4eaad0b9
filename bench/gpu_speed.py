"""Training speed of models 1 and 4 on the GPU at hand, as a share of its peak.

    python bench/gpu_speed.py --out OUT [--device cuda] [--budget-s S] [--tiny]

For each configuration, eager ones first, then compiled (most valuable first, so that a
stage killed at its limit keeps what it measured): model 1 (resnet18) and model 4
(resnet18_cbam_aspp); fp16 with a GradScaler (the T4's path, forced) and bf16; batch 128,
256 and 512. The step is colabkit's own (``forward_backward``, its SGD, the scaler;
channels_last on CUDA) on random data already on the device, so the images/s are the
model's, not the loader's. Its FLOPs are counted by ``torch.utils.flop_counter`` over one
forward and backward; FLOPs / step time over the GPU's dense tensor-core peak (NVIDIA's
datasheets, below) is the share of peak. Peak memory is ``max_memory_allocated`` of the
configuration. Each row is appended to OUT/speed.csv as it is measured and OUT/speed.md
is rewritten from it. Nothing here is a test: figures go to docs/benchmarks.md with the machine.

``--tiny`` (the rehearsal on a CPU): width 4, batch 2, one warm-up step and one timed, and ``torch.compile`` with
the ``eager`` backend (Dynamo traces, nothing is generated): the code path, not a speed.
"""
from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from colabkit.training.epochs import forward_backward, make_optimizer  # noqa: E402
from colabkit.models import build_model  # noqa: E402

MODELS = {"1": "resnet18", "4": "resnet18_cbam_aspp"}
# dense (no sparsity) fp16 / bf16 tensor-core TFLOP/s, NVIDIA datasheets; None: no such unit
PEAK_TFLOPS = {"H200 NVL": (835, 835), "H200": (989, 989), "H100 PCIe": (756, 756),
               "H100": (989, 989), "A100": (312, 312), "L40S": (362, 362), "L4": (121, 121),
               "A10G": (125, 125), "A10": (125, 125), "V100": (125, None), "T4": (65, None)}
FIELDS = ["model", "net", "precision", "batch", "mode", "images_per_s", "step_ms",
          "gflop_per_step", "tflops", "peak_tflops", "share_of_peak", "peak_mem_mb", "note"]


def peak_tflops(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (fp16, bf16) in PEAK_TFLOPS.items():  # longest names first where they overlap
        if key in name:
            return fp16 if precision == "fp16" else bf16
    return None


def step_flops(model, x, y) -> float:
    """FLOPs of one forward and backward (counted, not estimated)."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def measure(name, precision, batch, compiled, device, width, steps, backend, warm_steps=3) -> dict:
    torch.manual_seed(0)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = build_model(name, 12, width=width).to(device, memory_format=fmt).train()
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 12, (batch,), device=device)
    flops = step_flops(model, x, y)
    opt = make_optimizer(model, lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=False,
                         precision=precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if compiled:
        torch._dynamo.reset()  # a fresh cache: past 8 recompiles Dynamo would run eagerly, silently
    net = torch.compile(model, backend=backend) if compiled else model

    def step():
        forward_backward(net, x, y, opt, scaler, precision)
        scaler.step(opt)
        scaler.update()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for _ in range(warm_steps):  # warm-up: cuDNN's autotuning, compiling
        step()
    sync()
    warm = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    step_s = (time.perf_counter() - t) / steps
    peak = peak_tflops(device, precision)
    tflops = flops / step_s / 1e12
    return {"images_per_s": round(batch / step_s, 1), "step_ms": round(1e3 * step_s, 3),
            "gflop_per_step": round(flops / 1e9, 2), "tflops": round(tflops, 2),
            "peak_tflops": peak, "share_of_peak": None if not peak else round(tflops / peak, 4),
            "peak_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2 ** 20) if device.type == "cuda" else None,
            "note": f"warm-up {warm:.1f} s" + (f" (compile, backend {backend})" if compiled else "")}


def write_md(rows: list[dict], path: Path, header: str) -> None:
    lines = [header, "", "| model | precision | batch | mode | images/s | step ms | GFLOP/step | "
             "TFLOP/s | share of peak | peak MB | note |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        share = "" if r.get("share_of_peak") in (None, "") else f"{100 * float(r['share_of_peak']):.1f}%"
        lines.append(f"| {r['model']} ({r['net']}) | {r['precision']} | {r['batch']} | {r['mode']} | "
                     f"{r.get('images_per_s', '')} | {r.get('step_ms', '')} | {r.get('gflop_per_step', '')} | "
                     f"{r.get('tflops', '')} | {share} | {r.get('peak_mem_mb') or ''} | {r.get('note', '')} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for speed.csv and speed.md")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--budget-s", type=float, default=115.0,
                   help="start no configuration after this many seconds (the stage's limit kills)")
    p.add_argument("--tiny", action="store_true", help="the rehearsal's sizes, on any device")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    width, steps, batches = (4, 1, (2,)) if args.tiny else (64, 20, (128, 256, 512))
    backend = "eager" if args.tiny else "inductor"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    header = (f"Training step speed · {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC · {gpu} · "
              f"torch {torch.__version__} · command: python bench/gpu_speed.py"
              f"{' --tiny' if args.tiny else ''} --device {device}")
    plan = [(m, prec, b, False) for m in MODELS for prec in ("fp16", "bf16") for b in batches]
    plan += [(m, prec, b, True) for b in batches for m in MODELS for prec in ("fp16", "bf16")
             if not args.tiny or (m, prec) in (("1", "fp16"), ("4", "bf16"))]  # tiny: the path
    start, rows = time.perf_counter(), []
    with open(out / "speed.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for m, prec, b, compiled in plan:
            row = {"model": m, "net": MODELS[m], "precision": prec, "batch": b,
                   "mode": "compiled" if compiled else "eager"}
            if time.perf_counter() - start > args.budget_s:
                row["note"] = "not measured: the stage's time budget was spent"
            else:
                try:
                    row.update(measure(MODELS[m], prec, b, compiled, device, width, steps, backend,
                                       warm_steps=1 if args.tiny else 3))
                except Exception as e:  # noqa: BLE001 - a failed compile is a result too
                    row["note"] = f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            writer.writerow(row)
            f.flush()
            write_md(rows, out / "speed.md", header)
            print(" ".join(f"{k}={row.get(k)}" for k in FIELDS if row.get(k) not in (None, "")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
