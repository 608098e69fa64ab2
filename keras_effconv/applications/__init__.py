"""Model factories in the style of keras.applications, and presets in the keras-hub layout.

ImageNet-size: EffResNet18/34/50/101/152, EffVGG16/19, ChannelNetV1 (and their keras twins via
`get_model`). CIFAR-size: ResNet20/32/56, EffResNet20/32/56, EffSICNet8/11, MobileNetV2CIFAR, DemoCNN. `get_model(name, **kwargs)`
builds any of them. Every factory takes raw RGB in [0, 255] (`include_preprocessing=True`) and
`weights=` as a preset name, a preset directory (`save_preset`), a `.weights.h5` path or a URL.
"""

from keras_effconv.applications import keras_twins  # noqa: F401 - registers the keras twins
from keras_effconv.applications.channelnet import ChannelNetV1
from keras_effconv.applications.cifar import EffResNet20
from keras_effconv.applications.cifar import EffResNet32
from keras_effconv.applications.cifar import EffResNet56
from keras_effconv.applications.cifar import ResNet20
from keras_effconv.applications.cifar import ResNet32
from keras_effconv.applications.cifar import ResNet56
from keras_effconv.applications.democnn import DemoCNN
from keras_effconv.applications.features import feature_extractor
from keras_effconv.applications.imagenet_utils import decode_predictions
from keras_effconv.applications.imagenet_utils import normalize
from keras_effconv.applications.imagenet_utils import preprocess_input
from keras_effconv.applications.mobilenet_cifar import MobileNetV2CIFAR
from keras_effconv.applications.presets import builtin_presets
from keras_effconv.applications.presets import save_preset
from keras_effconv.applications.registry import available_models
from keras_effconv.applications.registry import get_model
from keras_effconv.applications.registry import register_model
from keras_effconv.applications.registry import twin_of
from keras_effconv.applications.resnet import EffResNet18
from keras_effconv.applications.resnet import EffResNet34
from keras_effconv.applications.resnet import EffResNet50
from keras_effconv.applications.resnet import EffResNet101
from keras_effconv.applications.resnet import EffResNet152
from keras_effconv.applications.sic_cifar import EffSICNet8
from keras_effconv.applications.sic_cifar import EffSICNet11
from keras_effconv.applications.vgg import EffVGG16
from keras_effconv.applications.vgg import EffVGG19
