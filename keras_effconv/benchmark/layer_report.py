"""The table of a layer benchmark result (`layers.run_layer_benchmark`)."""

from keras_effconv.benchmark import report
from keras_effconv.benchmark.layers import RUNTIME_LABELS
from keras_effconv.benchmark.layers import TARGET


def _ms(entry, variant, runtime):
    cell = entry["timings"].get(variant, {}).get(runtime)
    if cell is None:
        return "-"
    if "error" in cell:
        return "ERR"
    return report.fmt_ms(cell.get("median_ms"))


def format_layer_report(result):
    config = result["config"]
    target = config.get("target", TARGET)
    m = result["machine"]
    out = [
        f"bench_layers: batch {config['batch']}, runs={config['runs']} (reference: {config.get('reference_runs')}) "
        f"warmup={config['warmup']}, "
        f"{m.get('cpu_count')} CPUs, TF {m.get('tensorflow')}, Keras {m.get('keras')}, "
        f"LiteRT {m.get('ai_edge_litert')}, threads={config.get('threads')}",
        "ms = median latency of one call on the whole batch. vs ref = reference ms / fast ms. "
        "speedup = dense ms / fast ms. MAC ratio = dense MACs / layer MACs.",
        f"eff = speedup / MAC ratio (target >= {target}; '<' marks a miss). err = max|fast-ref|/max|ref|.",
        "",
    ]
    headers = ["Layer", "Input", "Runtime", "ref ms", "fast ms", "dense ms", "vs ref", "speedup",
               "MAC ratio", "eff", "", "err"]
    rows = []
    for e in result["results"]:
        shape = "x".join(map(str, e["shape"]))
        for runtime in config["runtimes"]:
            r = e["ratios"]["per_runtime"].get(runtime, {})
            eff = r.get("efficiency")
            err = e["fast_vs_reference_error"].get(runtime)
            rows.append([
                e["case"], shape, RUNTIME_LABELS[runtime],
                _ms(e, "reference", runtime), _ms(e, "fast", runtime), _ms(e, "dense", runtime),
                report.fmt_ratio(r.get("fast_over_reference_speedup")),
                report.fmt_ratio(r.get("speedup_vs_dense")),
                report.fmt_ratio(e["ratios"].get("mac_ratio")),
                report.fmt_ratio(eff, ""),
                "<" if eff is not None and eff < target else "",
                "n/a" if err is None else f"{err:.1e}",
            ])
    if rows:
        out.append(report.format_table(headers, rows, align=["<", "<", "<"] + [">"] * 7 + ["<", ">"]))
    else:
        out.append("(no layer could be benchmarked)")
    problems = [f"  {s['case']} @ {'x'.join(map(str, s['shape']))}: {s['message']}" for s in result["errors"]]
    for e in result["results"]:
        for variant, cells in e["timings"].items():
            for runtime, cell in cells.items():
                if isinstance(cell, dict) and "error" in cell:
                    problems.append(f"  {e['case']} {variant} {runtime}: {cell['error']}")
    if problems:
        out.append("")
        out.append("Errors:")
        out.extend(dict.fromkeys(problems))  # dedupe, keep order
    out.append("")
    out.append(
        f"Load average at start {m.get('load_average_at_start')}, at end {m.get('load_average_at_end')}; "
        f"elapsed {result.get('elapsed_s', 0):.0f} s."
    )
    return "\n".join(out)
