"""Efficient convolution layers. One scheme per module; see each module's docstring.

The paper's schemes: IntraChannelConv2D, SIConv2D, TopologicalConv2D, SpatialBottleneck, EffConv2D.
The field's other efficient convolutions: ChannelNets (channelnets.py), MobileNet blocks
(separable.py), factorized CP/Tucker/TT (factorized.py), decoupled (decoupled.py) and structured
(structured.py) convolutions. FusedBatchNormalization (batch_norm.py): Keras BN with a fused training step.
"""

from keras_effconv.layers.batch_norm import FusedBatchNormalization
from keras_effconv.layers.bottleneck import SpatialBottleneck
from keras_effconv.layers.channelnets import ConvClassifier
from keras_effconv.layers.channelnets import DepthwiseSeparableChannelWiseConv
from keras_effconv.layers.channelnets import GroupChannelWiseConv
from keras_effconv.layers.decoupled import DecoupledConv2D
from keras_effconv.layers.effconv import EffConv2D
from keras_effconv.layers.factorized import FactorizedConv2D
from keras_effconv.layers.factorized import FactorizedConv3D
from keras_effconv.layers.intra_channel import IntraChannelConv2D
from keras_effconv.layers.intra_channel import IntraChannelConv2DTranspose
from keras_effconv.layers.separable import DepthwiseSeparableBlock
from keras_effconv.layers.separable import GroupPointwiseConv
from keras_effconv.layers.sic import SIConv2D
from keras_effconv.layers.structured import StructuralRegularizer
from keras_effconv.layers.structured import StructuredConv2D
from keras_effconv.layers.structured import decompose as decompose_structured
from keras_effconv.layers.topological import TopologicalConv2D
