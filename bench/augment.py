"""Augmentation throughput alone: colabkit's batched pipeline vs the report's PIL one.

    python bench/augment.py [--device cpu|cuda] [--images N]

Model 2's augmentation (flips and the discrete rotation), batch 128; the report's way is
torchvision's PIL transforms in a DataLoader with 2 workers. ``bench/run.py`` prints this
table too, with the rest of the benchmarks.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import bench_augment, machine_line  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=12_800)
    args = p.parse_args()
    device = torch.device(args.device)
    report, ours = bench_augment(device, args.images)
    print(machine_line(device), "\n")
    print("| pipeline | images/s |\n|---|---:|")
    print(f"| report: torchvision PIL + DataLoader(num_workers=2) | {report:,.0f} |")
    print(f"| colabkit: batched on {args.device} | {ours:,.0f} |")
    print(f"| speed-up | {ours / report:.1f}× |")
