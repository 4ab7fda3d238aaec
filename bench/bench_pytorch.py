#!/usr/bin/python3
"""The four networks of kiln_vs_torch in Python PyTorch (Debian's python3-torch), eager and TorchScript.

  eager  m.eval() under torch.no_grad()
  jit    torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(m).eval())), under torch.no_grad()

For batches 1, 32, 256, 4096 and 1 and 2 threads (torch.set_num_threads, and openblas_set_num_threads when the
process has OpenBLAS; torch.set_num_interop_threads(1)). Each case is timed as Google Benchmark does: a few
repetitions of back-to-back calls for at least --min-time seconds each, the mean per call of each repetition,
and the median of those. Also the cores other processes kept busy meanwhile ("others"), and with --wait-quiet
(KILN_BENCH_WAIT_QUIET) it waits for a quiet machine before each repetition. Prints a table; --json writes
the medians.

Each row of the JSON also names the CPU and the OpenBLAS kernel set it ran under ("SkylakeX (auto)": OpenBLAS's
own choice; bench/run.sh runs this script once per kernel set).

With --combine FILE... (kiln_vs_torch's --benchmark_out JSON files) it measures nothing and prints one table of
Kiln, libtorch, oneDNN, and eager and jit from the --json files of earlier runs of this script, side by side:
each PyTorch variant under the OpenBLAS kernel set that was fastest for that case (named), then a table of
PyTorch under every kernel set tried. The CPU and date come first.

  bench/run.sh runs it with the environment bench/README.md describes; by hand:
  /usr/bin/python3 bench/bench_pytorch.py --threads 1 --repetitions 5
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

BATCHES = [1, 32, 256, 4096]


class RMSNorm(nn.Module):
    """torch.nn.RMSNorm (PyTorch 2.4) for torch 1.13: x * rsqrt(mean(x^2) + eps) * weight, eps = FLT_EPSILON."""

    def __init__(self, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.eps = torch.finfo(torch.float32).eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class BilinearNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.bilinear = nn.Bilinear(64, 48, 32)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.bilinear(x1, x2)


def networks():
    """name -> (module, per-sample input shapes), as in kiln_vs_torch.cpp."""
    mlp_s = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10),
                          nn.Softmax(1))
    mlp_norm = nn.Sequential(nn.Linear(512, 512), nn.LayerNorm(512), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(512, 512), nn.BatchNorm1d(512), nn.Tanh(), nn.Linear(512, 512),
                             RMSNorm(512), nn.Sigmoid())
    tiny = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    return {"mlp_s": (mlp_s, [(784,)]), "mlp_norm": (mlp_norm, [(512,)]), "tiny": (tiny, [(16,)]),
            "bilinear": (BilinearNet(), [(64,), (48,)])}


def give_norms_nontrivial_values(m: nn.Module):
    """As kiln_vs_torch does: norm weights, biases and BatchNorm's running stats drawn, not ones and zeros."""
    with torch.no_grad():
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            if t.dtype != torch.float32 or t.numel() == 0 or not bool((t == t.flatten()[0]).all()):
                continue
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif float(t.flatten()[0]) == 1.0:
                t.uniform_(0.5, 1.5)
            else:
                t.uniform_(-0.5, 0.5)


def openblas():
    """The process's OpenBLAS (libtorch's BLAS when libblas.so.3 is OpenBLAS), or None."""
    try:
        lib = ctypes.CDLL(None)
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config()
        return lib
    except (AttributeError, OSError):
        pass
    for line in open("/proc/self/maps"):
        if "openblas" in line and ".so" in line:
            lib = ctypes.CDLL(line.split()[-1])
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib
    return None


def blas_kernels(blas) -> str:
    """The OpenBLAS kernel set, labelled as kiln_vs_torch and bench/common.sh label it: the core's name, "(auto)"
    when OpenBLAS picked it itself (OPENBLAS_CORETYPE unset)."""
    if blas is None:
        return "not OpenBLAS"
    core = blas.openblas_get_corename().decode()
    return core if os.environ.get("OPENBLAS_CORETYPE") else f"{core} (auto)"


def cpu_name() -> str:
    """As lscpu names the CPU, with family, model and stepping (bench/cpu_name.hpp)."""
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                break  # the first processor's block
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return (f"{fields.get('model name', 'unknown CPU')} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}, stepping {fields.get('stepping', '?')})")


def set_threads(n: int, blas):
    torch.set_num_threads(n)
    if blas is not None:
        blas.openblas_set_num_threads(n)


# ---- a shared machine: what other processes use (as bench/quiet.hpp) ----------------------------------------
HZ = os.sysconf("SC_CLK_TCK")


def cpu_sample():
    """(every CPU's non-idle jiffies, this process's jiffies, when)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    t = os.times()
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], (t.user + t.system) * HZ, time.monotonic()


def others_cores(a, b) -> float:
    """Cores' worth of CPU that other processes used between two samples."""
    wall = b[2] - a[2]
    return max(0.0, ((b[0] - a[0]) - (b[1] - a[1])) / HZ / wall) if wall > 0 else 0.0


_last_quiet_check = None


def wait_for_quiet(max_seconds: float, threshold: float = 0.1, sample: float = 0.3, interval: float = 3.0):
    """Waits (at most once every `interval` s) until others use under `threshold` cores, or max_seconds pass."""
    global _last_quiet_check
    if max_seconds <= 0 or (_last_quiet_check and time.monotonic() - _last_quiet_check < interval):
        return
    start = time.monotonic()
    while True:
        a = cpu_sample()
        time.sleep(sample)
        if others_cores(a, cpu_sample()) < threshold or time.monotonic() - start >= max_seconds:
            break
    _last_quiet_check = time.monotonic()


def time_call(fn, min_time: float, repetitions: int, wait_quiet: float):
    """Median over repetitions of the mean seconds per call, each repetition at least min_time long; and the
    median over repetitions of the cores other processes kept busy meanwhile."""
    for _ in range(3):
        fn()
    # calibrate: calls per repetition
    n, elapsed = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time / 4 or n >= 1 << 24:
            break
        n *= 4
    n = max(1, int(n * min_time / max(elapsed, 1e-9)))
    means, others = [], []
    for _ in range(repetitions):
        wait_for_quiet(wait_quiet)
        before = cpu_sample()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        means.append((time.perf_counter() - t0) / n)
        others.append(others_cores(before, cpu_sample()))
    return statistics.median(means), statistics.median(others)


def measure(args):
    blas = openblas()
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    backend = [l.strip() for l in torch.__config__.parallel_info().splitlines() if "parallel backend" in l]
    cpu, kernels = cpu_name(), blas_kernels(blas)
    print(f"CPU: {cpu}")
    print(f"torch {torch.__version__}" + (f", {backend[0]}" if backend else ""))
    print("BLAS: " + (f"{blas.openblas_get_config().decode()}; kernels for {blas.openblas_get_corename().decode()}"
                      if blas is not None else "not OpenBLAS (probably the reference BLAS: slow)"))
    results = []
    nets = networks()
    for name in args.nets:
        m, shapes = nets[name]
        give_norms_nontrivial_values(m)
        m.eval()
        with torch.no_grad():
            jit = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(m).eval()))
        for threads in args.threads:
            set_threads(threads, blas)
            for batch in BATCHES:
                xs = [torch.rand(batch, *s) * 2 - 1 for s in shapes]
                with torch.no_grad():
                    ref = m(*xs)
                    out = jit(*xs)
                    err = float(((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)))
                    if err > 1e-4:
                        sys.exit(f"{name} batch {batch}: jit and eager disagree ({err:.3g} relative)")
                    row = {"net": name, "threads": threads, "batch": batch, "blas_kernels": kernels, "cpu": cpu}
                    others = 0.0
                    for variant, f in (("eager", m), ("jit", jit)):
                        t, o = time_call(lambda: f(*xs), args.min_time, args.repetitions, args.wait_quiet)
                        row[variant] = 1e6 * t
                        others = max(others, o)
                    row["others"] = others
                results.append(row)
                print(f"  {name}_t{threads} batch {batch:>4}: eager {row['eager']:10.2f} us   "
                      f"jit {row['jit']:10.2f} us   (others {others:.2f} cores)", flush=True)
    print()
    print_table(["net", "threads", "batch", "eager us", "jit us", "jit x eager", "others"],
                [[r["net"], r["threads"], r["batch"], f"{r['eager']:.2f}", f"{r['jit']:.2f}",
                  f"{r['eager'] / r['jit']:.2f}", busy_text(r["others"])] for r in results])
    print(OTHERS_NOTE)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


BUSY = 0.1
OTHERS_NOTE = (f"\nothers: the cores other processes kept busy during the row's measurements (median over repetitions, "
               f"the most over variants); ! over {BUSY}: the machine was shared, those timings are not to be trusted")


def busy_text(others: float) -> str:
    return f"{others:.2f}" + (" !" if others > BUSY else "")


def print_table(header, rows):
    rows = [[str(c) for c in r] for r in rows]
    width = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    text = lambda i, c: c.ljust(width[i]) if i == 0 else c.rjust(width[i])
    print("| " + " | ".join(text(i, h) for i, h in enumerate(header)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(width)) + "|")
    for r in rows:
        print("| " + " | ".join(text(i, c) for i, c in enumerate(r)) + " |")


def medians(data):
    """(case, variant, batch, median us, the benchmark's row) for each case of one kiln_vs_torch --benchmark_out
    file: the median of repetitions, or the one run when there are none."""
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median" and not (
                b.get("run_type") == "iteration" and b.get("repetitions", 1) <= 1):
            continue
        case, variant, batch = b["run_name"].split("/")[:3]
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b["time_unit"]]
        yield case, variant, int(batch), b["real_time"] * scale, b


def read_kiln_vs_torch(paths):
    """kiln_vs_torch's --benchmark_out files -> ({(case, batch, variant): {kernel set: median us}}, {(case, batch):
    others}, [context]). The torch variant may come from several files, one per OpenBLAS kernel set; the other
    variants come from one process."""
    times, others, contexts = {}, {}, []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        context = data["context"]
        contexts.append(context)
        kernels = context.get("blas_kernels", "?")
        for case, variant, batch, us, b in medians(data):
            times.setdefault((case, batch, variant), {})[kernels] = us
            others[(case, batch)] = max(others.get((case, batch), 0.0), b.get("others", 0.0))
    return times, others, contexts


def read_pytorch(paths):
    """This script's --json files -> ({(case, batch, "eager"|"jit"): {kernel set: median us}}, {(case, batch):
    others}, {cpu names})."""
    times, others, cpus = {}, {}, set()
    for path in paths or []:
        with open(path) as f:
            for r in json.load(f):
                key = (f"{r['net']}_t{r['threads']}", r["batch"])
                for variant in ("eager", "jit"):
                    times.setdefault(key + (variant,), {})[r.get("blas_kernels", "?")] = r[variant]
                others[key] = max(others.get(key, 0.0), r["others"])
                cpus.add(r.get("cpu", "?"))
    return times, others, cpus


def fastest(by_kernels):
    """(median us, kernel set) of the fastest kernel set, or (None, None)."""
    if not by_kernels:
        return None, None
    kernels = min(by_kernels, key=by_kernels.get)
    return by_kernels[kernels], kernels


def print_provenance(contexts, py_cpus):
    """Which CPU and when, once, above the tables; a warning where the files disagree on the CPU."""
    cpus = {c.get("cpu", "?") for c in contexts} | (py_cpus - {"?"})
    first = contexts[0] if contexts else {}
    print(f"CPU: {' / '.join(sorted(cpus))}; kiln_vs_torch started {first.get('date', '?')}; "
          f"{first.get('num_cpus', '?')} CPUs")
    if len(cpus) > 1:
        print("!! these results come from different CPUs: the ratios below are not meaningful")
    print()


def combine(args):
    """One table: Kiln and libtorch (kiln_vs_torch's medians) beside eager and jit (this script's), oneDNN's vendor
    ceiling, and Kiln's MLIR JIT kernel (kiln_vs_torch's "jit" variant: "kiln-mlir", 1 thread only; not
    TorchScript's jit). Each PyTorch variant is taken under its fastest OpenBLAS kernel set, and a second table
    gives it under every kernel set tried."""
    gb, gb_others, contexts = read_kiln_vs_torch(args.combine)
    py, py_others, py_cpus = read_pytorch(args.json)
    print_provenance(contexts, py_cpus)
    has_onednn = any(k[2] == "onednn" for k in gb)
    rows = []
    for case, batch in cases(gb):
        others = max(gb_others.get((case, batch), 0.0), py_others.get((case, batch), 0.0))
        row = summary_row(gb, py, case, batch, others, has_onednn)
        if row is not None:
            rows.append(row)
    header = ["net", "threads", "batch", "kiln us", "libtorch us", "libtorch BLAS", "eager us", "jit us",
              "best torch", "unfused us", "kiln x libtorch", "kiln x best torch"]
    if has_onednn:
        header += ["oneDNN us", "kiln x oneDNN"]
    print_table(header + ["kiln-mlir us", "kiln-mlir x libtorch", "kiln-mlir / kiln", "others"], rows)
    print("\nlibtorch BLAS: the OpenBLAS kernel set under which libtorch was fastest for that row (eager's and jit's "
          "are in the table below); best torch: the fastest of libtorch, eager and jit, and its kernel set")
    if has_onednn:
        print("oneDNN: the vendor ceiling, the same Linear(+ReLU) chain as oneDNN matmuls with fused bias and ReLU "
              "(GEMM-bound networks, batches 256 and 4096); kiln x oneDNN < 1: Kiln is slower than oneDNN")
    else:
        onednn = contexts[0].get("onednn", "not in these files") if contexts else "not in these files"
        print(f"no oneDNN column: kiln_vs_torch reports oneDNN {onednn}")
    print(OTHERS_NOTE)
    print_anchor(gb, py)


def best_torch(gb, py, case, batch):
    """PyTorch at its best for a case: (median us, "variant, kernel set") of the fastest of libtorch, eager and jit,
    each under its fastest OpenBLAS kernel set; (None, "-") where none of them ran."""
    torches = []
    for variant, times in (("libtorch", gb.get((case, batch, "torch"))), ("eager", py.get((case, batch, "eager"))),
                           ("jit", py.get((case, batch, "jit")))):
        t, kernels = fastest(times)
        if t is not None:
            torches.append((t, f"{variant}, {kernels}"))
    return min(torches) if torches else (None, "-")


def summary_row(gb, py, case, batch, others, has_onednn):
    """One row of the summary, or None where neither Kiln nor libtorch ran the case."""
    one = lambda v: fastest(gb.get((case, batch, v)))[0]  # variants measured once: their only value
    kiln, unf, mlir, onednn = one("kiln"), one("unfused"), one("jit"), one("onednn")
    lt, lt_kernels = fastest(gb.get((case, batch, "torch")))
    eager = fastest(py.get((case, batch, "eager")))[0]
    jit = fastest(py.get((case, batch, "jit")))[0]
    if kiln is None and lt is None:
        return None
    best, best_what = best_torch(gb, py, case, batch)
    row = [case.rsplit("_t", 1)[0], case.rsplit("_t", 1)[1], batch, us(kiln), us(lt), lt_kernels or "-", us(eager),
           us(jit), best_what, us(unf), ratio(lt, kiln), ratio(best, kiln)]
    if has_onednn:
        row += [us(onednn), ratio(onednn, kiln)]
    return row + [us(mlir), ratio(lt, mlir), ratio(mlir, kiln), busy_text(others)]


def cases(gb):
    """(case, batch) in table order: threads, then the networks' order, then batch."""
    known = list(networks())  # kiln_vs_torch also runs networks this script does not (resmlp): those come last
    net_order = lambda n: (known.index(n), "") if n in known else (len(known), n)
    names = sorted({k[0] for k in gb}, key=lambda c: (int(c.rsplit("_t", 1)[1]), net_order(c.rsplit("_t", 1)[0])))
    return [(c, b) for c in names for b in BATCHES]


def us(v):
    return "-" if v is None else f"{v:.2f}"


def ratio(slower, faster):
    return "-" if slower is None or faster is None else f"{slower / faster:.2f}"


def print_anchor(gb, py):
    """PyTorch's side under every OpenBLAS kernel set tried, the fastest marked, and how often each won."""
    sources = {"libtorch": lambda c, b: gb.get((c, b, "torch"), {}),
               "eager": lambda c, b: py.get((c, b, "eager"), {}), "jit": lambda c, b: py.get((c, b, "jit"), {})}
    kernel_sets = sorted({k for d in list(gb.values()) + list(py.values()) for k in d},
                         key=lambda k: (not k.endswith("(auto)"), k))
    if len(kernel_sets) < 2:
        print(f"\nPyTorch ran under one OpenBLAS kernel set only: {', '.join(kernel_sets) or 'none'}")
        return
    wins = {v: {k: 0 for k in kernel_sets} for v in sources}
    rows = []
    for case, batch in cases(gb):
        row = [case.rsplit("_t", 1)[0], case.rsplit("_t", 1)[1], batch]
        for variant, get in sources.items():
            times = get(case, batch)
            _, best = fastest(times)
            if best is not None:
                wins[variant][best] += 1
            row += [us(times.get(k)) + ("*" if k == best and len(times) > 1 else "") for k in kernel_sets]
        if any(c != "-" for c in row[3:]):
            rows.append(row)
    print("\nThe anchor: PyTorch under each OpenBLAS kernel set (us; * the fastest, which the table above uses)\n")
    print_table(["net", "threads", "batch"] + [f"{v} {k}" for v in sources for k in kernel_sets], rows)
    print()
    for variant, counts in wins.items():
        print(f"{variant}: fastest under " + ", ".join(f"{k} in {n}" for k, n in counts.items()) + " case(s)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--nets", nargs="+", default=list(networks()), choices=list(networks()))
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per repetition (at least)")
    p.add_argument("--wait-quiet", type=float, default=float(os.environ.get("KILN_BENCH_WAIT_QUIET", "0")),
                   help="before each repetition, wait up to this many seconds for other processes to leave the "
                        "cores alone (default: $KILN_BENCH_WAIT_QUIET or 0)")
    p.add_argument("--json", nargs="+", help="where to write the medians (with --combine: where to read them)")
    p.add_argument("--combine", nargs="+", metavar="KILN_JSON", help="kiln_vs_torch --benchmark_out files")
    args = p.parse_args()
    if args.combine:
        combine(args)
    else:
        if args.json and len(args.json) > 1:
            p.error("--json takes one file when measuring")
        args.json = args.json[0] if args.json else None
        measure(args)


if __name__ == "__main__":
    main()
