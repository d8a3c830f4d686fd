"""Time M nets trained in one batched step (torch_impl/batched.py) against M fused single-net steps, in one run.

Usage::

    python benchmarks/bench_sweep.py                                   # CPU, both shapes, models 1 4 16 64
    python benchmarks/bench_sweep.py --device cuda --json sweep.json   # a GPU: the batched step in a CUDA graph
    python benchmarks/bench_sweep.py --shapes digits --models 16 --steps 20 --repeats 9

Shapes (synthetic float32 data of the sizes the sweep trains on, C = 10, batches of B drawn with replacement):

    digits   D = 64,   H = 100, B = 200, N = 1,297   (the 8x8 digits, the sweep's default)
    cifar    D = 3072, H = 50,  B = 200, N = 49,000  (cs231n's CIFAR-10 two-layer net)

Rows, one per (shape, models M):

    sequential   M nets trained one after another, each step the fastest single-net step the project has:
                 the batch gather, then torch_impl/fused_step.py's fused_sgd_step (eager, also on a GPU)
    batched      the same M nets in one BatchedTwoLayerNets: one gather and one batched step per step for all M;
                 on a GPU the steps replay from a captured CUDA graph (GraphedBatchedSteps), as the sweep runs them

Both report ms per model-step (a block's time / (steps x M)); ``speedup`` = sequential / batched. ``--clock cpu
--threads 1`` times by the process's CPU time instead of the wall clock (on a busy shared machine). Rows are timed
in interleaved rounds (per round one block of ``--steps`` steps of every row, in alternating order), so a change of
load on a shared machine hits both alike; a row's time is the median over ``--repeats`` blocks, and the fastest
block is kept beside it (``*_min``). The load average before and after is printed and written with the rows.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from torch_impl.batched import BatchedTwoLayerNets, GraphedBatchedSteps  # noqa: E402
from torch_impl.fused_step import fused_sgd_step  # noqa: E402

# wall: time.perf_counter; cpu: this process's CPU time (time.process_time), with --threads 1 a measure that other
# processes on a shared machine disturb much less (they take turns on the cores, not this process's CPU seconds)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
SHAPES = {"digits": {"D": 64, "H": 100, "B": 200, "N": 1_297}, "cifar": {"D": 3072, "H": 50, "B": 200, "N": 49_000}}
NUM_CLASSES, STD, LR, REG = 10, 1e-4, 1e-4, 0.25


def make_problem(shape, models, device, steps, seed=0):
    """Data X (N, D), y (N,), the batch index table (steps, B) and ``models`` nets' params, all on ``device``."""
    s, gen = SHAPES[shape], torch.Generator().manual_seed(seed)
    X = torch.randn(s["N"], s["D"], generator=gen)  # (N, D)
    y = torch.randint(0, NUM_CLASSES, (s["N"],), generator=gen)  # (N,)
    table = torch.randint(0, s["N"], (steps, s["B"]), generator=gen)  # (steps, B)
    nets = []
    for _ in range(models):
        nets.append({"W1": STD * torch.randn(s["D"], s["H"], generator=gen), "b1": torch.zeros(s["H"]),
                     "W2": STD * torch.randn(s["H"], NUM_CLASSES, generator=gen), "b2": torch.zeros(NUM_CLASSES)})
    to = lambda t: t.to(device)
    return to(X), to(y), to(table), [{k: to(v) for k, v in p.items()} for p in nets]


def sequential_block(X, y, table, nets):
    """A function running ``len(table)`` steps of every net, net after net (fused_sgd_step, eager)."""
    params = [list(p.values()) for p in nets]

    def block():
        for p in params:
            for idx in table:
                fused_sgd_step(X.index_select(0, idx), y.index_select(0, idx), *p, REG, LR)
    return block


def batched_block(X, y, table, nets, graph):
    """A function running ``len(table)`` batched steps of all nets: eager, or one replay of a CUDA graph."""
    batched = BatchedTwoLayerNets.stack(nets, reg=REG)
    lr = torch.full((len(nets),), LR, device=X.device)
    if graph:
        steps = GraphedBatchedSteps(batched, X, y)
        steps.load_epoch(table, lr.expand(len(table), -1))
        return lambda: steps.run(0, len(table))

    def block():
        for idx in table:
            batched.step(X.index_select(0, idx), y.index_select(0, idx), lr)
    return block


def timed(block, device, clock=time.perf_counter):
    if device == "cuda":
        torch.cuda.synchronize()
    start = clock()
    block()
    if device == "cuda":
        torch.cuda.synchronize()
    return clock() - start


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def run_benchmark(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device, graph = args.device, args.device == "cuda" and not args.no_graph
    load_before = os.getloadavg()
    print(f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
          + f", torch {torch.__version__}, {torch.get_num_threads()} threads, batched step "
          + ("in a CUDA graph" if graph else "eager") + f", {args.clock} clock; load average before "
          f"{load_before[0]:.2f}")
    cases = [(shape, M) for shape in args.shapes for M in args.models]
    blocks = {}
    for shape, M in cases:
        X, y, table, nets = make_problem(shape, M, device, args.steps)
        blocks[shape, M, "sequential"] = sequential_block(X, y, table, nets)
        blocks[shape, M, "batched"] = batched_block(X, y, table, nets, graph)
        for key in ("sequential", "batched"):  # warm-up: allocations, thread pools, the graph's capture
            timed(blocks[shape, M, key], device)
    times = {key: [] for key in blocks}
    for r in range(args.repeats):
        for shape, M in cases:
            for key in (("sequential", "batched") if r % 2 == 0 else ("batched", "sequential")):
                elapsed = timed(blocks[shape, M, key], device, CLOCKS[args.clock])
                times[shape, M, key].append(elapsed / (args.steps * M) * 1e3)
    load_after = os.getloadavg()
    rows = []
    print(f"{'shape':8s} {'models':>6s} {'sequential':>12s} {'batched':>10s} {'speedup':>8s}   "
          "(ms per model-step: median of the blocks; fastest blocks in brackets)")
    for shape, M in cases:
        seq, bat = times[shape, M, "sequential"], times[shape, M, "batched"]
        row = {"shape": shape, "models": M, "sequential_ms_per_model_step": round(median(seq), 5),
               "batched_ms_per_model_step": round(median(bat), 5), "speedup": round(median(seq) / median(bat), 2),
               "sequential_ms_min": round(min(seq), 5), "batched_ms_min": round(min(bat), 5),
               "speedup_min": round(min(seq) / min(bat), 2)}
        rows.append(row)
        print(f"{shape:8s} {M:6d} {row['sequential_ms_per_model_step']:12.4f} {row['batched_ms_per_model_step']:10.4f}"
              f" {row['speedup']:7.2f}x   [{row['sequential_ms_min']:.4f} {row['batched_ms_min']:.4f} "
              f"{row['speedup_min']:.2f}x]")
    print(f"load average after {load_after[0]:.2f}")
    if args.json:
        meta = {"device": device, "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                "torch": torch.__version__, "threads": torch.get_num_threads(),
                "batched_path": "cuda_graph" if graph else "eager", "steps": args.steps, "repeats": args.repeats,
                "clock": args.clock,
                "load_average_before": round(load_before[0], 2), "load_average_after": round(load_after[0], 2),
                "cpu_count": os.cpu_count(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        print(f"rows written to {args.json}")
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/bench_sweep.py", description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", help="write {meta, rows} as JSON to this path")
    p.add_argument("--shapes", nargs="+", choices=tuple(SHAPES), default=list(SHAPES))
    p.add_argument("--models", nargs="+", type=int, default=[1, 4, 16, 64], help="nets per row (M)")
    p.add_argument("--steps", type=int, default=10, help="SGD steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per row (interleaved rounds)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--no_graph", action="store_true", help="on cuda, time the batched step eagerly")
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                   help="wall time, or this process's CPU time (cpu: on a CPU with --threads 1 only)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device: got cuda, but torch sees no CUDA GPU; expected cpu here")
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: got {getattr(args, name)}; expected an integer >= 1")
    if args.clock == "cpu" and (args.device != "cpu" or args.threads != 1):
        p.error(f"--clock: got cpu with --device {args.device} --threads {args.threads}; expected --device cpu "
                "--threads 1 (CPU time adds up the threads' spinning, and misses a GPU's work)")
    if min(args.models) < 1:
        p.error(f"--models: got {args.models}; expected integers >= 1")
    return args


if __name__ == "__main__":
    run_benchmark(parse_args())
