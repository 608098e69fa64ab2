"""Topological subdivisioning (Wang, Liu & Foroosh, Algorithm 4): connectivity and its execution.

Input channels are laid out row-major as a tensor ``layout = (d1, ..., ds)``. Output channel ``o``
sits at the flat layout position ``o * C_in // C_out`` (so ``C_out`` must divide or be a multiple of
``C_in``: several outputs share a position when ``C_out > C_in``, positions are spread evenly when
``C_out < C_in``). It connects only to the inputs ``(p_t + a_t) mod d_t``, ``0 <= a_t < c_t``, for
``neighborhood = (c1, ..., cs)``: a cyclic window at its own position. Weights are not shared: the
layer stores one weight per kept connection, a *compact* kernel ``[kh, kw, prod(c), C_out]``.

Execution plans:
- reference: scatter the compact kernel into the dense masked kernel, one dense conv;
- fast: cut every layout dim into blocks; a window then spans at most two blocks per banded dim, so
  the layer is a short sum of *grouped* convolutions (one per block offset), whose kernels are
  gathered from the compact kernel (weight-sized, constant-folded at export). The work is
  proportional to the connections kept. A block offset other than zero needs the input channels
  rolled by a block (one gather per extra term); layouts whose neighbourhood is 1 or the full extent
  on every dim (with full dims last) are block-diagonal: a single grouped conv, no gather at all.
"""

import itertools

import numpy as np
import tensorflow as tf

from keras_effconv.ops import conv as conv_ops


def _as_tuple(value, name):
    """A non-empty tuple of positive ints (bools, strings and floats rejected, never truncated)."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if is_int(value):
        value = (int(value),)
    elif isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        value = tuple(int(v) for v in value)
    else:
        raise ValueError(f"`{name}` must be a tuple of positive ints; received {name}={value!r}")
    if not value or min(value) < 1:
        raise ValueError(f"`{name}` must be a non-empty tuple of positive ints; received {name}={value!r}")
    return value


class Topology:
    """Connectivity tables of one topological layer (pure numpy; built once per layer)."""

    def __init__(self, layout, neighborhood, in_channels=None, out_channels=None):
        self.layout = _as_tuple(layout, "layout")
        self.neighborhood = _as_tuple(neighborhood, "neighborhood")
        if len(self.neighborhood) != len(self.layout):
            raise ValueError(
                f"`neighborhood` must have one entry per layout dim ({len(self.layout)}); "
                f"received neighborhood={neighborhood!r} for layout={self.layout!r}"
            )
        if any(c > d for c, d in zip(self.neighborhood, self.layout)):
            raise ValueError(
                f"`neighborhood` must not exceed `layout` in any dim; received neighborhood={neighborhood!r} "
                f"for layout={self.layout!r}"
            )
        self.in_channels = int(np.prod(self.layout))
        if in_channels is not None and in_channels != self.in_channels:
            raise ValueError(
                f"The product of `layout` must equal the input channels ({in_channels}); "
                f"received layout={self.layout!r} (product {self.in_channels})"
            )
        self.out_channels = self.in_channels if out_channels is None else int(out_channels)
        c_in, c_out = self.in_channels, self.out_channels
        dense = self.neighborhood == self.layout  # every output sees every input: any count works
        if c_out < 1 or (not dense and c_out % c_in and c_in % c_out):
            raise ValueError(
                f"`filters` must divide or be a multiple of the input channels ({c_in}) to map outputs "
                f"onto the layout; received filters={out_channels!r}"
            )
        self.window = int(np.prod(self.neighborhood))
        self.connection_ratio = self.window / c_in
        self.index = self._index_table()
        # lookup[i, o]: flat position of connection (i -> o) in the compact kernel, or the zero slot.
        self.zero_slot = self.window * c_out
        lookup = np.full((c_in, c_out), self.zero_slot, dtype=np.int64)
        w, o = np.meshgrid(np.arange(self.window), np.arange(c_out), indexing="ij")
        lookup[self.index, o] = w * c_out + o
        self.lookup = lookup
        self.terms, self.out_perm = self._plan()

    def positions(self):
        """Flat layout position of each output channel."""
        return np.arange(self.out_channels) * self.in_channels // self.out_channels

    def _index_table(self):
        """index[w, o]: the input channel of window element w of output o."""
        d = np.array(self.layout)[:, None, None]
        pos = np.array(np.unravel_index(self.positions(), self.layout))
        offsets = np.array(np.unravel_index(np.arange(self.window), self.neighborhood))
        coords = (pos[:, None, :] + offsets[:, :, None]) % d
        # Along fully connected dims the window element is the absolute coordinate, so that
        # block-diagonal layouts store their kernel exactly as the grouped conv reads it.
        full = (np.array(self.layout) == np.array(self.neighborhood))[:, None, None]
        coords = np.where(full, np.broadcast_to(offsets[:, :, None], coords.shape), coords)
        return np.ravel_multi_index(tuple(coords), self.layout)

    def mask(self):
        """[C_in, C_out] 0/1 connectivity."""
        return (self.lookup != self.zero_slot).astype(np.float32)

    def _blocks(self):
        blocks = []
        for d, c in zip(self.layout, self.neighborhood):
            if c in (1, d):
                blocks.append(1 if c == 1 else d)
            else:  # smallest block a window crosses at most once, so two offsets cover it
                blocks.append(min(b for b in range(max(c - 1, 1), d + 1) if d % b == 0))
        return np.array(blocks)

    def _plan(self):
        layout = np.array(self.layout)
        blocks = self._blocks()
        groups = layout // blocks
        n_groups = int(np.prod(groups))
        pos = np.array(np.unravel_index(self.positions(), self.layout))
        out_group = np.ravel_multi_index(tuple(pos // blocks[:, None]), tuple(groups))
        counts = np.bincount(out_group, minlength=n_groups)
        if counts.min() != counts.max():  # outputs not evenly spread over blocks: one dense group
            blocks, groups, n_groups = layout.copy(), np.ones_like(layout), 1
            out_group = np.zeros(self.out_channels, dtype=np.int64)
        out_order = np.argsort(out_group, kind="stable")
        per_block = self.per_block = int(np.prod(blocks))
        g = np.array(np.unravel_index(np.arange(n_groups), tuple(groups)))
        r = np.array(np.unravel_index(np.arange(per_block), tuple(blocks)))
        spans = [min(1 + (b + c - 2) // b, G) for b, c, G in zip(blocks, self.neighborhood, groups)]
        terms, covered = [], 0
        for offset in itertools.product(*[range(n) for n in spans]):
            shift = np.array(offset)[:, None, None]
            coords = ((g[:, :, None] + shift) % groups[:, None, None]) * blocks[:, None, None] + r[:, None, :]
            perm = np.ravel_multi_index(tuple(coords), self.layout).reshape(-1)
            # Grouped kernel [per_block, C_out]: group of output j reads perm[group * per_block + r].
            rows = perm.reshape(n_groups, per_block)[out_group[out_order]].T
            src = self.lookup[rows, out_order[None, :]]
            if np.all(src == self.zero_slot):
                continue
            covered += int(np.sum(src != self.zero_slot))
            terms.append((_channel_op(perm), _kernel_op(src, self.zero_slot)))
        assert covered == self.window * self.out_channels, "topology plan must cover each connection once"
        identity_out = np.array_equal(out_order, np.arange(self.out_channels))
        return terms, (None if identity_out else np.argsort(out_order))

    @property
    def gathers(self):
        """Channel gathers/rolls per call on the fast path (0 for block-diagonal layouts)."""
        return sum(op is not None for op, _ in self.terms) + (self.out_perm is not None)


def _channel_op(perm):
    """None (identity), ("roll", shift) for a cyclic shift, or ("gather", perm)."""
    n = len(perm)
    if np.array_equal(perm, np.arange(n)):
        return None
    if np.array_equal(perm, (np.arange(n) + perm[0]) % n):
        return ("roll", int(perm[0]))
    return ("gather", perm)


def _kernel_op(src, zero_slot):
    """How a term's kernel comes from the compact one: ("slice", start) or ("gather", src)."""
    rows, cols = src.shape
    if np.any(src == zero_slot):  # the zero slot is not a compact row: a slice would read past the kernel
        return ("gather", src)
    start = src[0, 0] // cols
    if src[0, 0] % cols == 0 and np.array_equal(src, (start + np.arange(rows))[:, None] * cols + np.arange(cols)):
        return ("slice", int(start))
    return ("gather", src)


def _apply_channel_op(x, op):
    if op is None:
        return x
    kind, value = op
    if kind == "roll":  # two slices + concat: TFLite builtins, no GATHER
        return tf.concat([x[..., value:], x[..., :value]], axis=-1)
    return tf.gather(x, tf.constant(value, tf.int32), axis=-1)


def _term_kernel(compact, op, rows):
    kind, value = op
    if kind == "slice":
        return compact if (value == 0 and rows == compact.shape[2]) else compact[:, :, value: value + rows, :]
    return _gather_kernel(compact, value)


def _gather_kernel(compact, src):
    """Gather a [kh, kw, rows, C_out] kernel from the compact one; `src` indexes flat connections."""
    kh, kw = compact.shape[0], compact.shape[1]
    flat = tf.reshape(compact, [kh, kw, -1])
    flat = tf.concat([flat, tf.zeros([kh, kw, 1], flat.dtype)], axis=2)
    gathered = tf.gather(flat, tf.constant(src.reshape(-1), tf.int32), axis=2)
    return tf.reshape(gathered, [kh, kw, src.shape[0], src.shape[1]])


def dense_kernel(topology, compact):
    """The equivalent masked dense kernel [kh, kw, C_in, C_out]."""
    return _gather_kernel(compact, topology.lookup)


def conv_reference(x, topology, compact, strides, padding, dilation_rate):
    return tf.nn.conv2d(x, dense_kernel(topology, compact), strides, padding.upper(), dilations=dilation_rate)


def _grouped_pointwise(x, kernel, strides):
    """A grouped 1x1 conv as one batched matmul: XLA on CPU runs grouped convolutions ~2.5x slower
    than the equivalent einsum (measured 1.07 vs 0.40 ms at 56x56x256 -> 64, 4 groups)."""
    sh, sw = strides
    if (sh, sw) != (1, 1):
        x = x[:, ::sh, ::sw, :]
    rows, filters = kernel.shape[2], kernel.shape[3]
    groups = x.shape[-1] // rows
    grouped = tf.reshape(x, [-1, x.shape[1], x.shape[2], groups, rows])
    y = tf.einsum("nhwgr,rgf->nhwgf", grouped, tf.reshape(kernel, [rows, groups, filters // groups]))
    return tf.reshape(y, [-1, x.shape[1], x.shape[2], filters])


def conv_fast(x, topology, compact, strides, padding, dilation_rate, path="tf"):
    """Sum of grouped convolutions (see module docstring); exact, cost ~ connections kept."""
    y = None
    pointwise_xla = (
        path == "xla" and compact.shape[:2] == (1, 1) and topology.per_block < topology.in_channels
        and None not in x.shape[1:3] and tuple(dilation_rate) == (1, 1)
    )
    for channel_op, kernel_op in topology.terms:
        kernel = _term_kernel(compact, kernel_op, topology.per_block)
        xi = _apply_channel_op(x, channel_op)
        if pointwise_xla:
            out = _grouped_pointwise(xi, kernel, strides)
        else:
            out = conv_ops.grouped_conv2d(xi, kernel, strides, padding.upper(), dilation_rate)
        y = out if y is None else y + out
    if topology.out_perm is not None:
        y = tf.gather(y, tf.constant(topology.out_perm, tf.int32), axis=-1)
    return y
