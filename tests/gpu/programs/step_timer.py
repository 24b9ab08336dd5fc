# The bench mode of the PyTorch training programs: `--bench N` prints the median time of N steps
# (after a warm-up) instead of the training output.
import sys
import time

import torch


def bench_requested():
    return len(sys.argv) > 2 and sys.argv[1] == "--bench"


def print_median_step(name, step):
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        step().item()
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"{name}_step_ms {times[len(times) // 2] * 1e3:.2f}")
