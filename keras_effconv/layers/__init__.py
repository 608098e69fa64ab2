"""Efficient convolution layers. One scheme per module; see each module's docstring."""

from keras_effconv.layers.bottleneck import SpatialBottleneck
from keras_effconv.layers.effconv import EffConv2D
from keras_effconv.layers.intra_channel import IntraChannelConv2D
from keras_effconv.layers.intra_channel import IntraChannelConv2DTranspose
from keras_effconv.layers.sic import SIConv2D
from keras_effconv.layers.topological import TopologicalConv2D
