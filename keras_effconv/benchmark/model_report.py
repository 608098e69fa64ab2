"""Tables and the latency-vs-MACs plot of a model benchmark result (`models.run_model_benchmark`)."""

from keras_effconv.benchmark import report


def _cell(entry, key, field="median_ms"):
    cell = entry["timings"].get(key)
    if cell is None:
        return "-"
    if "error" in cell:
        return "ERR"
    return report.fmt_ms(cell.get(field))


def _sizes(entries):
    """"224x224" or "224x224 / 32x32": the inference inputs of the models in the result."""
    sizes = sorted({e["image_size"] for e in entries if e.get("image_size")}, reverse=True)
    return " / ".join(f"{s}x{s}" for s in sizes) or "no"


def format_model_report(result):
    """The tables printed by `effconv bench`."""
    cols = [tuple(c) for c in result["columns"]]
    config = result["config"]
    entries = result["results"]
    ok = [e for e in entries if e["status"] == "ok"]
    out = []
    m = result["machine"]
    out.append(
        f"effconv bench ({config.get('suite', 'imagenet')}): {_sizes(entries)} inference, "
        f"{'QUICK ' if config.get('quick') else ''}runs={config['runs']} rounds={config.get('rounds', 1)} "
        f"warmup={config['warmup']}, "
        f"{m.get('cpu_count')} CPUs, TF {m.get('tensorflow')}, Keras {m.get('keras')}, "
        f"LiteRT {m.get('ai_edge_litert')}, threads={config.get('threads')}"
    )
    out.append(f"Training column: {result['notes']['train']}.")
    headers = ["Model", "Twin", "Input", "GMACs", "Params M"] + [label for _, label in cols]
    for field, title in (("median_ms", "Latency, median ms"), ("p90_ms", "Latency, p90 ms")):
        rows = []
        for e in ok:
            macs = report.fmt_count(e["macs"], 1e9, digits=3) if e["macs"] is not None else "n/a"
            rows.append(
                [e["model"], e["twin"] or ("(ref)" if e["role"] == "reference" else ""), e.get("image_size", ""), macs,
                 report.fmt_count(e["params"], 1e6)] + [_cell(e, k, field) for k, _ in cols]
            )
        out.append("")
        out.append(report.format_table(headers, rows, title=title + ":"))

    ratios = result.get("ratios") or {}
    if ratios:
        rows, eff_rows = [], []
        for name, r in ratios.items():
            label = f"{name} vs {r['twin']}"
            rows.append(
                [label, report.fmt_ratio(r["macs_reduction"]), report.fmt_ratio(r["params_reduction"])]
                + [report.fmt_ratio(r["speedup"].get(k)) for k, _ in cols]
            )
            eff_rows.append([label] + [report.fmt_ratio(r["speedup_over_mac_reduction"].get(k), "") for k, _ in cols])
        out.append("")
        out.append(
            report.format_table(
                ["Pair", "MACs", "Params"] + [label for _, label in cols],
                rows,
                title="Ratios twin / Eff (> 1: the Eff model is cheaper / faster):",
            )
        )
        out.append("")
        out.append(
            report.format_table(
                ["Pair"] + [label for _, label in cols],
                eff_rows,
                title="Speedup / MAC reduction (1.00: latency falls exactly as much as MACs):",
            )
        )

    setup_rows = []
    for e in ok:
        s = e["setup_s"]
        first = [s.get(f"xla_b{b}_first_call") for b in config["batches"]]
        setup_rows.append(
            [e["model"], f"{s['build']:.1f}" if "build" in s else "-",
             " / ".join(f"{v:.1f}" for v in first if v is not None) or "-",
             f"{s['tflite_convert']:.1f}" if "tflite_convert" in s else "-",
             "yes" if e.get("litert_builtins_only") else ("NO" if e.get("litert_builtins_only") is False else "-"),
             next((f"{v:.1f}" for k, v in s.items() if k.startswith("train_") and k.endswith("first_call")), "-"),
             f"{s.get('total', 0):.0f}", f"{s['cpu_total']:.0f}" if "cpu_total" in s else "-"]
        )
    if setup_rows:
        out.append("")
        out.append(
            report.format_table(
                ["Model", "build s", "XLA 1st call s", "TFLite convert s", "builtins only", "train 1st step s",
                 "total s", "CPU s"],
                setup_rows,
                title="One-time costs (not in the latencies):",
            )
        )

    problems = []
    for e in entries:
        if e["status"] != "ok":
            problems.append(f"  {e['model']}: {e.get('error')}")
            continue
        for key, cell in e["timings"].items():
            if isinstance(cell, dict) and "error" in cell:
                problems.append(f"  {e['model']} {key}: {cell['error']}")
    if problems:
        out.append("")
        out.append("Errors:")
        out.extend(problems)
    load = (m.get("load_average_at_start"), m.get("load_average_at_end"))
    out.append("")
    out.append(
        f"Load average (1/5/15 min) at start {load[0]}, at end {load[1]}; elapsed {result.get('elapsed_s', 0):.0f} s "
        f"wall, {result.get('cpu_s', 0):.0f} s CPU. '-': not measured; 'ERR': see above."
    )
    return "\n".join(out)


def plot_models(result, path):
    """Latency vs MACs (log-log), one marker per runtime at the smallest batch, twin -> Eff arrows.
    Returns the path, or None (with `report.PLOT_HINT` to print) if matplotlib is missing."""
    plt = report.import_pyplot()
    if plt is None:
        return None
    cols = [tuple(c) for c in result["columns"]]
    batches = sorted({int(k.rsplit("_b", 1)[1]) for k, _ in cols if not k.startswith("train")})
    batch = batches[0] if batches else None
    series = [(k, label) for k, label in cols if batch is not None and k.endswith(f"_b{batch}") and not k.startswith("train")]
    entries = {e["model"]: e for e in result["results"] if e["status"] == "ok" and e.get("macs")}
    fig, ax = plt.subplots(figsize=(9, 6))
    markers = {"tf": "o", "xla": "s", "litert": "^"}
    for key, label in series:
        xs, ys, names = [], [], []
        for name, e in entries.items():
            value = report.median_ms(e, key)
            if value is not None:
                xs.append(e["macs"] / 1e9)
                ys.append(value)
                names.append(name)
        if not xs:
            continue
        points = ax.scatter(xs, ys, marker=markers.get(key.split("_")[0], "o"), label=label, s=45)
        color = points.get_facecolor()[0]
        for x, y, name in zip(xs, ys, names):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
            twin = entries.get(entries[name].get("twin") or "")
            if twin is not None and report.median_ms(twin, key) is not None:
                ax.annotate(
                    "", xy=(x, y), xytext=(twin["macs"] / 1e9, report.median_ms(twin, key)),
                    arrowprops=dict(arrowstyle="->", color=color, alpha=0.5, linestyle="--"),
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel(f"median latency, ms (batch {batch})")
    m = result["machine"]
    ax.set_title(
        f"Latency vs MACs, {_sizes(result['results'])}, {m.get('cpu_count')} CPUs "
        f"(TF {m.get('tensorflow')}); arrows: twin -> Eff"
    )
    from matplotlib import ticker

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
