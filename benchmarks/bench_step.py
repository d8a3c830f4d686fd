"""Time one SGD step of the two-layer net at cs231n's CIFAR-10 shape against the GEMM floor, all in one run.

Usage::

    python benchmarks/bench_step.py                                  # CPU, H = 50 and 100, every row
    python benchmarks/bench_step.py --device cuda --json bench.json  # a GPU, rows written as JSON
    python benchmarks/bench_step.py --rows floor fused --hidden 50 --repeats 15
    python benchmarks/bench_step.py --memory                         # peak RSS of fit instead

The data are synthetic, of the shape cs231n trains on: N = 49,000 rows of D = 3,072 float32 features, C = 10
classes, batches of B = 200 drawn with replacement. Rows (``--rows``):

    floor           the batch gather X[idx] and the two large GEMMs X_b W1 and X_b^T dH, into preallocated
                    outputs: the part of a step no implementation can avoid
    numpy_float64   reference_numpy's step as cs231n's train runs it: loss and grads, then the SGD update (CPU)
    numpy_float32   the same on float32 arrays
    fused           the fused step path's step: gather, then torch_impl/fused_step.py's fused_sgd_step (loss, the
                    formulas, the update fused into the gradient GEMMs; on a CPU the NaN check of the loss included)
    front_door      the front door step path's step: gather, TwoLayerLoss.apply, backward through the engine,
                    torch.optim.SGD (fused kernel) step, zero_grad
    front_door_autograd  the same with the plain-autograd twin (autograd_twin.two_layer_loss_autograd)
    graph           (CUDA) the graph step path's step: one SGD step replayed from a captured graph
                    (torch_impl/cuda_graph.py), data and indices on the GPU
    fit_fused       ``python -m train fit`` with the CLI's defaults (the fused step path, 16 SGD steps per
                    training_step, progress bar, CSV logger, checkpoint and plot callbacks) on a data module holding
                    the same data, timed between two training steps of one run (see bench_fit.py; one run per round)
    fit_front_door  the same with --model.steps_per_call 1 (the front door, every step through Lightning's hooks)
    fit_graph       (CUDA) fit with --model.cuda_graph true (the graph step path, 16 steps per replay)
    fit_graph_k1    (CUDA) fit with --model.cuda_graph true --model.steps_per_call 1

Rows are timed in interleaved rounds (per round, one block of ``--steps`` steps of every row), so a change of load
on a shared machine hits every row alike. A row's ms/step is the median over its ``--repeats`` blocks, and its ratio
is to the floor's median of the same run; the fastest block of each row and its ratio to the fastest floor block are
printed beside them (on a busy machine the quiet moments). torch uses its default thread count unless --threads.
After a NumPy block the benchmark sleeps 0.3 s, untimed: NumPy's OpenBLAS threads spin-wait after their last GEMM
and, on 2 cores, take a core from the torch row timed next (fused measures 2.8x floor instead of 1.45x).
"""
import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import reference_numpy.neural_net as ref  # noqa: E402
from torch_impl.autograd_twin import two_layer_loss_autograd  # noqa: E402
from torch_impl.cuda_graph import GraphedSGDSteps  # noqa: E402
from torch_impl.fused_step import fused_sgd_step  # noqa: E402
from torch_impl.neural_net import TwoLayerLoss, TwoLayerNet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: common.py, bench_fit.py
from common import BATCH, INPUT_SIZE, LR, NUM_CLASSES, NUM_TRAIN, REG, STD, make_data  # noqa: E402

NUMPY_ROWS = ("numpy_float64", "numpy_float32")
CUDA_ROWS = ("graph", "fit_graph", "fit_graph_k1")
FIT_ARGS = {"fit_fused": [], "fit_front_door": ["--model.steps_per_call", "1"],
            "fit_graph": ["--model.cuda_graph", "true"],
            "fit_graph_k1": ["--model.cuda_graph", "true", "--model.steps_per_call", "1"]}
ROWS = ("floor", *NUMPY_ROWS, "fused", "front_door", "front_door_autograd", "graph", "fit_fused", "fit_front_door",
        "fit_graph", "fit_graph_k1")


def floor_step(X, y, hidden):
    """Gather a batch, S1 = X_b W1, dW1 = X_b^T dH: preallocated outputs, nothing else."""
    W1 = STD * torch.randn(INPUT_SIZE, hidden, device=X.device)  # (D, H)
    X_b = torch.empty(BATCH, INPUT_SIZE, device=X.device)  # (B, D)
    S1 = torch.empty(BATCH, hidden, device=X.device)  # (B, H); stands in for dH
    dW1 = torch.empty(INPUT_SIZE, hidden, device=X.device)  # (D, H)

    def step():
        idx = torch.randint(0, X.shape[0], (BATCH,), device=X.device)  # (B,)
        torch.index_select(X, 0, idx, out=X_b)
        torch.mm(X_b, W1, out=S1)
        torch.mm(X_b.T, S1, out=dW1)

    return step


def numpy_step(X, y, hidden, dtype):
    """One iteration of reference_numpy TwoLayerNet.train's loop: sample, loss and grads, SGD update."""
    np.random.seed(0)
    net = ref.TwoLayerNet(INPUT_SIZE, hidden, NUM_CLASSES, std=STD)
    net.params = {k: v.astype(dtype) for k, v in net.params.items()}
    X_np, y_np = X.cpu().numpy().astype(dtype, copy=False), y.cpu().numpy()

    def step():
        indices = np.random.choice(X_np.shape[0], BATCH)  # with replacement, as cs231n
        loss, grads = net.loss(X_np[indices], y=y_np[indices], reg=REG)
        for name in net.params:
            net.params[name] -= LR * grads[name]  # the SGD update

    return step


def front_door_step(X, y, hidden, loss_fn):
    """The front-door step: gather on the device, loss, backward through autograd, optimizer step, zero_grad."""
    init = torch.Generator().manual_seed(0)
    net = TwoLayerNet(INPUT_SIZE, hidden, NUM_CLASSES, std=STD, generator=init).to(X.device)
    W1, b1, W2, b2 = net.params.values()
    opt = torch.optim.SGD(net.parameters(), lr=LR, fused=True)  # one kernel for the update (CPU and CUDA)

    def step():
        idx = torch.randint(0, X.shape[0], (BATCH,), device=X.device)  # (B,)
        X_b, y_b = X.index_select(0, idx), y.index_select(0, idx)  # (B, D), (B,)
        loss = loss_fn(X_b, y_b, W1, b1, W2, b2, REG)
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def fused_step(X, y, hidden):
    """The fused step path's step: gather on the device, fused_sgd_step (no autograd)."""
    init = torch.Generator().manual_seed(0)
    net = TwoLayerNet(INPUT_SIZE, hidden, NUM_CLASSES, std=STD, generator=init).to(X.device)
    params = list(net.params.values())
    on_cpu = X.device.type == "cpu"

    def step():
        idx = torch.randint(0, X.shape[0], (BATCH,), device=X.device)  # (B,)
        fused_sgd_step(X.index_select(0, idx), y.index_select(0, idx), *params, REG, LR, finite_only=on_cpu)

    return step


def graph_step(X, y, hidden):
    """The graph step path's step, replayed from a CUDA graph: gather by a device-side position, loss, backward,
    update."""
    init = torch.Generator().manual_seed(0)
    net = TwoLayerNet(INPUT_SIZE, hidden, NUM_CLASSES, std=STD, generator=init).to(X.device)
    W1, b1, W2, b2 = net.params.values()
    steps = GraphedSGDSteps(lambda X_b, y_b: TwoLayerLoss.apply(X_b, y_b, W1, b1, W2, b2, REG), [W1, b1, W2, b2],
                            X, y)
    num_batches = -(-X.shape[0] // BATCH)
    steps.load_epoch(torch.randint(0, X.shape[0], (num_batches, BATCH), device=X.device),  # (num_batches, B)
                     torch.full((num_batches,), LR, device=X.device))
    position = [0]

    def step():
        steps.run(position[0], 1)
        position[0] = (position[0] + 1) % num_batches

    return step


def build(name, X, y, hidden, warmup):
    """A block timer for row ``name``: ``block(steps) -> ms per step`` (the first call after ``warmup`` steps)."""
    if name in FIT_ARGS:
        from bench_fit import lightning_fit_ms  # imports Lightning and the CLI only when asked for

        return lambda steps: lightning_fit_ms(X, y, hidden, steps, warmup, model_args=FIT_ARGS[name])
    if name == "graph":
        step = graph_step(X, y, hidden)
    elif name == "floor":
        step = floor_step(X, y, hidden)
    elif name in NUMPY_ROWS:
        step = numpy_step(X, y, hidden, np.float64 if name == "numpy_float64" else np.float32)
    elif name == "fused":
        step = fused_step(X, y, hidden)
    elif name == "front_door":
        step = front_door_step(X, y, hidden, TwoLayerLoss.apply)
    elif name == "front_door_autograd":
        step = front_door_step(X, y, hidden, two_layer_loss_autograd)
    else:
        raise ValueError(f"--rows: unknown row {name!r}; expected some of {', '.join(ROWS)}")
    sync = torch.cuda.synchronize if X.is_cuda else (lambda: None)
    for _ in range(warmup):
        step()

    def block(steps):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        return (time.perf_counter() - t0) / steps * 1e3

    return block


def time_rows(blocks, steps, repeats):
    """{name: [ms per step of each block]}: ``repeats`` rounds, each timing one block of every row in turn."""
    times = {name: [] for name in blocks}
    for _ in range(repeats):
        for name, block in blocks.items():
            times[name].append(block(steps))
            if name in NUMPY_ROWS:
                time.sleep(0.3)  # let OpenBLAS's spinning threads sleep before the next row (module docstring)
    return times


def run_benchmark(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    X, y = make_data(device, args.num_train)
    rows = []
    for hidden in args.hidden:
        names = [n for n in args.rows if not (n in NUMPY_ROWS and device.type != "cpu")
                 and not (n in CUDA_ROWS and device.type != "cuda")]
        blocks = {n: build(n, X, y, hidden, args.warmup) for n in names}
        times = time_rows(blocks, args.steps, args.repeats)
        floor_ms, floor_min = float(np.median(times["floor"])), float(np.min(times["floor"]))
        for name in names:
            ms, ms_min = float(np.median(times[name])), float(np.min(times[name]))
            row_device = "cpu" if name in NUMPY_ROWS else device.type
            rows.append({"name": name, "device": row_device, "hidden": hidden, "ms_per_step": round(ms, 4),
                         "ratio_to_floor": round(ms / floor_ms, 3), "ms_min": round(ms_min, 4),
                         "min_ratio_to_floor": round(ms_min / floor_min, 3)})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} steps x {args.repeats} repeats; "
          "median (and fastest) block")
    print(f"{'name':19s} {'device':7s} {'hidden':>6s} {'ms/step':>9s} {'x floor':>8s} {'min ms':>9s} {'x floor':>8s}")
    for r in rows:
        print(f"{r['name']:19s} {r['device']:7s} {r['hidden']:6d} {r['ms_per_step']:9.3f} {r['ratio_to_floor']:8.2f} "
              f"{r['ms_min']:9.3f} {r['min_ratio_to_floor']:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def run_memory(args):
    """Peak RSS of ``fit`` on CIFAR-shaped data in a fresh process: the fixed part (RSS after importing torch,
    Lightning and the CLI) and the rest (the data and everything that grows with it), against the training tensor."""
    from bench_fit import fit_memory

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=fit_memory, args=(args.hidden[0], args.num_train, args.steps, queue))
    proc.start()
    fixed, peak, nbytes = queue.get()
    proc.join()
    mib = 2 ** 20
    print(f"fit, N={args.num_train}: peak RSS {peak / mib:.0f} MiB = fixed {fixed / mib:.0f} MiB (imports) + "
          f"{(peak - fixed) / mib:.0f} MiB; training tensor {nbytes / mib:.0f} MiB; peak / tensor {peak / nbytes:.2f}, "
          f"(peak - fixed) / tensor {(peak - fixed) / nbytes:.2f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the torch rows run")
    p.add_argument("--hidden", type=int, nargs="+", default=[50, 100], help="hidden sizes H to time")
    p.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows to time, from {', '.join(ROWS)}")
    p.add_argument("--steps", type=int, default=50, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per row (median taken)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per row first")
    p.add_argument("--num-train", type=int, default=NUM_TRAIN, help="rows of synthetic training data")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's, one per core)")
    p.add_argument("--json", help="write the rows as a JSON list to this path")
    p.add_argument("--memory", action="store_true", help="measure peak RSS of fit instead")
    args = p.parse_args(argv)
    for name in ("steps", "repeats", "num_train", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    unknown = [n for n in args.rows if n not in ROWS]
    if unknown:
        p.error(f"--rows: unknown {unknown}; expected some of {', '.join(ROWS)}")
    if "floor" not in args.rows:
        args.rows = ["floor", *args.rows]  # ratios need the floor of the same run
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available")
    return args


if __name__ == "__main__":
    a = parse_args()
    run_memory(a) if a.memory else run_benchmark(a)
