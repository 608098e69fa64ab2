"""`effconv presets`: the built-in presets that ship with the package, with their measured accuracy."""

HELP = "list the built-in presets (trained weights shipped in the package) and their accuracy"
DESCRIPTION = """List the built-in presets: MODEL(weights="NAME") loads one offline, hash-checked.
Each row: model, preset name, dataset, input shape, classes, measured top-1 accuracy and the split it
was measured on, weights size and dtype. Presets live in keras_effconv/presets/<Model>/<preset>/
(config.json, model.weights.h5, metadata.json); `effconv train --save-preset DIR` writes one.

examples:
  effconv presets
  effconv presets --model EffResNet20
  effconv presets --json"""


def add_arguments(parser):
    parser.add_argument("--model", metavar="NAME", help="only this model's presets")
    parser.add_argument("--json", action="store_true", help="print the presets' metadata as JSON")


def rows(model=None):
    """[(model, preset, metadata)] of the built-in presets, sorted."""
    from keras_effconv.applications import presets

    found = presets.builtin_presets()
    if model is not None:
        found = {model: found.get(model, {})}
    return [(name, preset, presets.Preset(path).metadata)
            for name, entries in sorted(found.items()) for preset, path in sorted(entries.items())]


def _accuracy(meta):
    if meta.get("accuracy") is None:
        return "not measured"
    split = meta.get("accuracy_split")
    return f"{meta['accuracy']:.2%}" + (f" ({split})" if split else "")


def run(args):
    import json

    from keras_effconv.applications import registry

    if args.model is not None and args.model not in registry.available_models():
        raise ValueError(f"Unknown model name={args.model!r}; available: {', '.join(registry.available_models())}")
    found = rows(args.model)
    if args.json:
        print(json.dumps([{"model": m, "preset": p, **meta} for m, p, meta in found], indent=2, default=str))
        return 0
    if not found:
        where = f" for {args.model}" if args.model else ""
        print(f"No built-in presets ship with this installation{where}. Train one with "
              "`effconv train ... --save-preset DIR` and load it with weights=DIR.")
        return 0
    header = ("model", "preset", "dataset", "input", "classes", "accuracy", "weights")
    table = [header] + [
        (m, p, str(meta.get("dataset") or "-"), "x".join(str(v) for v in meta.get("input_shape") or []) or "-",
         str(meta.get("classes", "-")), _accuracy(meta),
         f"{meta.get('weights_bytes', 0) / 1e6:.2f} MB {meta.get('weights_dtype', '')}".strip())
        for m, p, meta in found
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
