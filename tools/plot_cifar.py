#!/usr/bin/env python
"""CIFAR-10 accuracy against cost: one PNG with four panels (top-1 vs MACs, LiteRT b1 latency, TF b256
latency, training step b128) and a markdown table, from a bench JSON and the recipe's results JSON.

    effconv bench --suite cifar --json bench_cifar.json
    python tools/plot_cifar.py --bench bench_cifar.json --results recipes/cifar10/results.json --output cifar.png

One point per model and epoch budget (distilled runs and other recipe changes apart): the mean validation accuracy over its
runs (seeds), the error bar half the min-max range when there are several. The panels' batch sizes come from the bench run's config
(LiteRT: its smallest batch, TF: its largest, training: its batch), so another run is labelled
right. Needs matplotlib (the `plot` extra: pip install -e '.[plot]'); reads JSON only, no TensorFlow.
"""

import argparse
import json
import statistics
import sys

METRICS = {"best": "val_accuracy_best", "flip_tta": "val_accuracy_best_flip_tta"}


def bench_columns(bench):
    """[(key, label)] of the cost panels after MACs: LiteRT smallest batch, TF largest, the train step."""
    config = bench.get("config", {})
    litert, tf = min(config.get("litert_batches") or [1]), max(config.get("batches") or [1])
    train = config.get("train_batch", 128)
    return [(f"litert_b{litert}", f"LiteRT b{litert}"), (f"tf_b{tf}", f"TF b{tf}"), (f"train_b{train}", f"train b{train}")]


def load_bench(bench):
    """{model: {"macs", "params", <column key>: median ms}} of the models the bench measured."""
    out = {}
    for entry in bench.get("results", []):
        if entry.get("status") != "ok":
            continue
        row = {"macs": entry.get("macs"), "params": entry.get("params")}
        for key, cell in entry.get("timings", {}).items():
            if isinstance(cell, dict) and cell.get("median_ms") is not None:
                row[key] = cell["median_ms"]
        out[entry["model"]] = row
    return out


def _change_tag(key, value):
    return f"{key.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{key.replace('_', ' ')} {value}"


def load_results(results, metric="best"):
    """{label: {"accuracies": [...], "seeds": [...], "macs", "params", "model"}} from the runs of a
    results JSON. Runs pool (as seeds) only under the same model, epoch budget and recipe: the label is
    the model name plus "(N ep)", each recipe change ("(N ep, cutmix 1)", from `recipe_changes`) and
    "distilled" for runs with `distill_from`."""
    field = METRICS[metric]
    out = {}
    for run in results.get("runs", {}).values():
        if run.get(field) is None:
            continue
        # Another budget or a distilled run is a different recipe: a row of its own, timed as the same model.
        tags = [f"{run['epochs']} ep"] if run.get("epochs") else []
        tags += [_change_tag(key, value) for key, value in sorted((run.get("recipe_changes") or {}).items())]
        tags += ["distilled"] if run.get("distill_from") else []
        label = f"{run['model']} ({', '.join(tags)})" if tags else run["model"]
        row = out.setdefault(label, {"accuracies": [], "seeds": [], "macs": run.get("macs"),
                                     "params": run.get("params"), "model": run["model"],
                                     "epochs": run.get("epochs") or 0})
        row["accuracies"].append(float(run[field]))
        row["seeds"].append(run.get("seed"))
    return out


def summarize(bench, results, metric="best"):
    """[{model, macs, params, acc_mean, acc_spread, n, <column key>: ms}] for the models with results,
    ordered by MACs, then model and epoch budget. `acc_spread`: half the min-max range (0 for one run)."""
    measured = load_bench(bench)
    rows = []
    for model, runs in load_results(results, metric).items():
        accs = runs["accuracies"]
        row = dict(measured.get(runs["model"], {}))
        row.setdefault("macs", runs["macs"])
        row.setdefault("params", runs["params"])
        row.update(model=model, arch=runs["model"], epochs=runs["epochs"], acc_mean=statistics.fmean(accs), acc_spread=(max(accs) - min(accs)) / 2, n=len(accs))
        rows.append(row)
    return sorted(rows, key=lambda r: (r["macs"] is None, r["macs"] or 0, r["arch"], r["epochs"], r["model"]))


def _ms(value):
    return "n/a" if value is None else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def markdown_table(rows, columns):
    """Model, MACs, params, accuracy mean ± spread (n seeds), then one ms column per cost panel."""
    headers = ["model", "MACs", "params", "val acc (mean ± spread, n)"] + [f"{label} ms" for _, label in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        macs = "n/a" if r["macs"] is None else f"{r['macs'] / 1e6:.1f} M"
        params = "n/a" if r["params"] is None else f"{r['params'] / 1e3:.0f} k"
        acc = f"{100 * r['acc_mean']:.2f} ± {100 * r['acc_spread']:.2f} % ({r['n']} seed{'s' if r['n'] > 1 else ''})"
        lines.append("| " + " | ".join([r["model"], macs, params, acc] + [_ms(r.get(k)) for k, _ in columns]) + " |")
    return "\n".join(lines)


MARKERS = "os^Dvp*"


def point_styles(rows):
    """{row label: (colour, marker)}: one colour per architecture, one marker per budget of it, so the
    legend tells every row apart (ten colours alone would repeat past ten rows)."""
    colours, used, styles = {}, {}, {}
    for r in rows:
        colour = colours.setdefault(r.get("arch", r["model"]), f"C{len(colours) % 10}")
        used[colour] = used.get(colour, -1) + 1  # markers run on per colour, across the models sharing it
        styles[r["model"]] = (colour, MARKERS[used[colour] % len(MARKERS)])
    return styles


def plot(rows, columns, path, metric="best"):
    """Write the four-panel PNG to `path`; returns `path`. ImportError if matplotlib is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    styles = point_styles(rows)
    panels = [("macs", "M MACs per image", 1e-6)] + [(key, f"{label} median ms", 1.0) for key, label in columns]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (key, xlabel, scale) in zip(axes.flat, panels):
        points = [r for r in rows if r.get(key) is not None]
        for r in points:
            x, y = r[key] * scale, 100 * r["acc_mean"]
            ax.errorbar(x, y, yerr=100 * r["acc_spread"] if r["n"] > 1 else None, fmt=styles[r["model"]][1], capsize=3,
                        color=styles[r["model"]][0], label=r["model"])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"top-1 % ({METRICS[metric]})")
        ax.grid(True, which="both", alpha=0.3)
        if not points:
            ax.set_title("(not measured)", fontsize=9)
    # One legend, not per-point labels: runs of one model at several budgets share an x and would overlap.
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, max(1, len(labels))), fontsize=8)
    fig.suptitle("CIFAR-10 validation accuracy vs cost (mean over seeds; bars: half the min-max range)")
    fig.tight_layout(rect=(0, 0.02 + 0.025 * ((len(labels) + 2) // 3), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True, metavar="BENCH.json", help="`effconv bench --suite cifar --json` output")
    parser.add_argument("--results", default="recipes/cifar10/results.json", metavar="RESULTS.json",
                        help="training results (default: %(default)s)")
    parser.add_argument("--output", default="cifar.png", metavar="OUT.png", help="PNG to write (default: %(default)s)")
    parser.add_argument("--metric", choices=tuple(METRICS), default="best",
                        help="accuracy: best validation epoch, or with flip test-time augmentation (default: %(default)s)")
    args = parser.parse_args(argv)
    with open(args.bench) as f:
        bench = json.load(f)
    with open(args.results) as f:
        results = json.load(f)
    columns = bench_columns(bench)
    rows = summarize(bench, results, args.metric)
    if not rows:
        print(f"no runs with {METRICS[args.metric]} in {args.results}", file=sys.stderr)
        return 1
    print(markdown_table(rows, columns))
    try:
        plot(rows, columns, args.output, args.metric)
    except ImportError:
        print("matplotlib is not installed: no plot written (pip install -e '.[plot]')", file=sys.stderr)
        return 1
    print(f"\nPlot written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
