"""`Profile`: the per-layer result of `keras_effconv.analysis.profile`, printable and JSON-ready."""

import dataclasses

# Where a row's MAC count comes from.
SOURCE_KERAS = "keras"  # a built-in formula (conv, dense, ...)
SOURCE_PROTOCOL = "compute_macs"  # the layer's own `compute_macs(input_shape)`
SOURCE_ZERO = "zero"  # a known layer type that does no MACs (pooling, BN, activations, adds, ...)
SOURCE_UNKNOWN = "unknown"  # unknown type: counted as 0 MACs, flagged


def human(n, unit=""):
    """`4_089_184_256 -> "4.09 G"`: short, fixed units so totals compare at a glance."""
    n = float(n)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


@dataclasses.dataclass
class Row:
    """One layer call. `params` is counted on the first call of a layer only (shared weights)."""

    name: str  # path from the profiled object, e.g. "block1/conv"
    class_name: str
    output_shape: object  # tuple (one output) or list of tuples; batch dim as recorded (None or 1)
    macs: int
    params: int
    source: str  # one of the SOURCE_* constants

    @property
    def unknown(self):
        """True when the layer type is not known: its MACs are counted as 0 and may be missing."""
        return self.source == SOURCE_UNKNOWN

    def to_dict(self):
        shape = self.output_shape
        if isinstance(shape, tuple):
            shape = list(shape)
        elif isinstance(shape, list):
            shape = [list(s) for s in shape]
        return {
            "name": self.name,
            "class_name": self.class_name,
            "output_shape": shape,
            "macs": int(self.macs),
            "params": int(self.params),
            "source": self.source,
            "unknown": self.unknown,
        }


class Profile:
    """MACs (one example) and parameters per layer call, with totals.

    Rows are the leaves of the counting walk: layers with a formula or a `compute_macs` method,
    zero-MAC layers, and unknown leaf layers (flagged). Containers without `compute_macs` are
    expanded into their sublayer calls; weights of a container not owned by any called sublayer
    get their own row (source "unknown", MACs 0) so `total_params` still adds up.
    """

    def __init__(self, name, rows):
        self.name = name
        self.rows = list(rows)

    @property
    def total_macs(self):
        return sum(int(r.macs) for r in self.rows)

    @property
    def total_params(self):
        return sum(int(r.params) for r in self.rows)

    @property
    def unknown_layers(self):
        """Names of rows counted as 0 MACs because the layer type is unknown."""
        return [r.name for r in self.rows if r.unknown]

    def to_dict(self):
        return {
            "name": self.name,
            "total_macs": self.total_macs,
            "total_params": self.total_params,
            "unknown_layers": self.unknown_layers,
            "rows": [r.to_dict() for r in self.rows],
        }

    def table(self):
        """An aligned text table; unknown layers are marked with `?`, totals in G/M units."""
        header = ("Layer", "Class", "Output shape", "MACs", "Params", "")
        lines = [header]
        for r in self.rows:
            lines.append(
                (
                    r.name,
                    r.class_name,
                    _shape_str(r.output_shape),
                    f"{int(r.macs):,}",
                    f"{int(r.params):,}",
                    "?" if r.unknown else "",
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        right = {3, 4}  # numbers right-aligned

        def fmt(line):
            cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
            return "  ".join(cells).rstrip()

        rule = "-" * len(fmt(tuple("-" * w for w in widths)))
        out = [f"Profile: {self.name}", rule, fmt(header), rule]
        out += [fmt(line) for line in lines[1:]]
        out.append(rule)
        out.append(f"Total MACs: {human(self.total_macs)} ({self.total_macs:,})  (one example)")
        out.append(f"Total params: {human(self.total_params)} ({self.total_params:,})")
        if self.unknown_layers:
            out.append(f"? {len(self.unknown_layers)} layer(s) of unknown type counted as 0 MACs")
        return "\n".join(out)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return (
            f"<Profile {self.name}: {human(self.total_macs)} MACs, "
            f"{human(self.total_params)} params, {len(self.rows)} rows>"
        )


def _shape_str(shape):
    if isinstance(shape, list):
        return ", ".join(_shape_str(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
