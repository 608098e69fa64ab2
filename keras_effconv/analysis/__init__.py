"""MAC and parameter counting: `count_macs(model_or_layer, input_shape=None)` and `profile(...)`.

Layers of this package report their own MACs through `compute_macs(self, input_shape) -> int`
(one example; batch dim ignored); Keras built-ins are known here. See `macs.py` for the rules.
"""

from keras_effconv.analysis.formulas import einsum_macs  # noqa: F401
from keras_effconv.analysis.macs import count_macs  # noqa: F401
from keras_effconv.analysis.macs import profile  # noqa: F401
from keras_effconv.analysis.profile import Profile  # noqa: F401
from keras_effconv.analysis.profile import Row  # noqa: F401
