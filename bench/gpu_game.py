"""A stand-in for the owner's game: a second CUDA process that keeps the GPU busy with matmuls.

    python bench/gpu_game.py --seconds 20     # GAME READY <unix time> once its context runs, GAME OVER at the end
    python bench/gpu_game.py --cpu ...        # --dry runs of bench/gpu_fleet_e2e.py: no CUDA, sleeps
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args()
    if args.cpu:
        print(f"GAME READY {time.time():.3f}", flush=True)
        time.sleep(args.seconds)
        print(f"GAME OVER {time.time():.3f}", flush=True)
        return
    import torch

    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    (x @ x).sum().item()
    print(f"GAME READY {time.time():.3f}", flush=True)
    end, frames = time.time() + args.seconds, 0
    while time.time() < end:
        for _ in range(20):
            x = torch.tanh(x @ x)
        torch.cuda.synchronize()
        frames += 1
    print(f"GAME OVER {time.time():.3f} ({frames} frames)", flush=True)


if __name__ == "__main__":
    main()
