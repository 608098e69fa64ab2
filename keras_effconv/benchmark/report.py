"""Plain-text tables, JSON output and the optional matplotlib plot."""

import json
import math
import os

PLOT_HINT = (
    "matplotlib is not installed, so no plot was written. Install the `plot` extra:\n"
    "    pip install -e '.[plot]'      (or: pip install 'keras_effconv[plot]' / pip install matplotlib)"
)


def format_table(headers, rows, align=None, title=None):
    """Aligned monospace table. `align`: one of "<" / ">" per column (default: first left, rest right)."""
    rows = [["" if c is None else str(c) for c in row] for row in rows]
    headers = [str(h) for h in headers]
    if align is None:
        align = ["<"] + [">"] * (len(headers) - 1)
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}; received row={row!r}")
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line(headers))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def fmt_ms(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value >= 1000:
        return f"{value:.0f}"
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value, suffix="x"):
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "n/a"
    return f"{value:.2f}{suffix}"


def fmt_count(value, scale, digits=2):
    if value is None:
        return "n/a"
    return f"{value / scale:.{digits}f}"


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None:
        return None
    try:
        if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
            return None
    except TypeError:
        return None
    return float(numerator) / float(denominator)


def _json_default(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _clean(obj):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def to_json_text(result):
    return json.dumps(_clean(json.loads(json.dumps(result, default=_json_default))), indent=2, allow_nan=False)


def write_json(result, path):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        f.write(to_json_text(result))
        f.write("\n")
    return path


def import_pyplot():
    """matplotlib.pyplot with a non-interactive backend, or None if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def median_ms(entry, key):
    """The median latency of one timed column of a result entry, or None."""
    cell = entry.get("timings", {}).get(key) if entry else None
    return cell.get("median_ms") if isinstance(cell, dict) else None
