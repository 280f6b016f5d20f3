"""Turns bench/out/ (written by bench/run.sh) into the markdown table of bench/RESULTS.md.

    python3 bench/report.py bench/out

Times are medians over steps, then the median over rounds (bench/run.sh --rounds); the line
below the table gives each framework's spread over rounds. Ratios are lamina's time over
the other framework's (below 1.0: lamina is faster). FLOPs
are lamina's count for the model (2 per multiply-add of its matrix layers; training counts
the forward pass and both gradients), the same work for all three frameworks.
"""
import json
import math
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/out")
rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
peaks = [json.loads(line) for line in (out / "peak.jsonl").read_text().splitlines() if line.strip()]
runs = {}
for r in rows:
    runs.setdefault((r["framework"], r["model"]), []).append(r)
# One row per framework and model: the round with the median training time.
by = {key: sorted(rs, key=lambda r: r["train_ms"])[(len(rs) - 1) // 2] for key, rs in runs.items()}
by = {key: dict(r, predict_ms=statistics.median(x["predict_ms"] for x in runs[key])) for key, r in by.items()}
models = [m for m in ["A", "B", "C", "D", "E", "F", "F1024"] if ("lamina", m) in by]
peak = max(p["gflops"] for p in peaks)


def cell(fw, m, key):
    r = by.get((fw, m))
    return r[key] if r else None


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None else a / b


peak_text = ", ".join(f"{p['gflops']:.1f} GFLOP/s with {p['threads']} thread(s)" for p in peaks)
print(f"sgemm peak (oneDNN, 2048^3): {peak_text}\n")
print("| model | lamina train ms | PyTorch train ms | Keras train ms | lamina/PyTorch | lamina/Keras "
      "| lamina predict ms | PyTorch predict ms | Keras predict ms | predict lamina/PyTorch | lamina GFLOP/s (% of peak) "
      "| PyTorch GFLOP/s | lamina peak RSS MiB | PyTorch peak RSS MiB | training adds, lamina / PyTorch MiB |")
print("|" + "---|" * 15)
geo_train, geo_keras, geo_pred = [], [], []
for m in models:
    lt, pt, kt = (cell(f, m, "train_ms") for f in ("lamina", "pytorch", "keras"))
    lp, pp, kp = (cell(f, m, "predict_ms") for f in ("lamina", "pytorch", "keras"))
    flops = cell("lamina", m, "train_flops")
    lg = flops / lt / 1e6
    pg = flops / pt / 1e6 if pt else None
    lr, prr = cell("lamina", m, "rss_peak_mb"), cell("pytorch", m, "rss_peak_mb")
    ladd = lr - cell("lamina", m, "rss_before_mb")
    padd = prr - cell("pytorch", m, "rss_before_mb") if prr else None
    for acc, a, b in ((geo_train, lt, pt), (geo_keras, lt, kt), (geo_pred, lp, pp)):
        if a and b and m != "F1024":
            acc.append(math.log(a / b))
    print(f"| {m} | {fmt(lt, 2)} | {fmt(pt, 2)} | {fmt(kt, 2)} | {fmt(ratio(lt, pt), 2)} | {fmt(ratio(lt, kt), 2)} "
          f"| {fmt(lp, 2)} | {fmt(pp, 2)} | {fmt(kp, 2)} | {fmt(ratio(lp, pp), 2)} | {lg:.1f} ({100 * lg / peak:.0f}%) "
          f"| {fmt(pg)} | {fmt(lr, 0)} | {fmt(prr, 0)} | {fmt(ladd, 0)} / {fmt(padd, 0)} |")


def geo(v):
    return f"{math.exp(sum(v) / len(v)):.2f}" if v else "-"


print(f"\nGeometric mean over A-F (training step): lamina/PyTorch {geo(geo_train)}, lamina/Keras {geo(geo_keras)}; "
      f"predict lamina/PyTorch {geo(geo_pred)}.")
same = []
for m in models:
    sums = {f: cell(f, m, "checksum") for f in ("lamina", "lamina-rerun", "lamina-1thread")}
    same.append(f"{m} {'same' if len(set(sums.values())) == 1 else 'DIFFERENT: ' + str(sums)}")
print("Trained weights, lamina with 2 threads, again, and with 1 thread: " + "; ".join(same) + ".")
def spread(fw, m):
    t = [r["train_ms"] for r in runs.get((fw, m), [])]
    return f"{min(t):.4g}-{max(t):.4g}" if len(t) > 1 else "-"


n_rounds = max(len(runs.get(("lamina", m), [])) for m in models)
print(f"Training step over {n_rounds} round(s), fastest-slowest ms (lamina / PyTorch / Keras): " +
      "; ".join(f"{m} {spread('lamina', m)} / {spread('pytorch', m)} / {spread('keras', m)}" for m in models) + ".")
one = ", ".join(f"{m} {fmt(cell('lamina-1thread', m, 'train_ms'), 2)}" for m in models)
print(f"lamina's training step with 1 thread (ms): {one}.")
vers = {f: next((r["version"] for r in rows if r["framework"] == f), "-") for f in ("pytorch", "keras")}
print(f"PyTorch {vers['pytorch']}; Keras {vers['keras']}.")
