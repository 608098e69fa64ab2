"""Image-classification input pipelines for training, evaluation, calibration and the demo.

One `tf.data` pipeline for every source, chosen by a *data spec* string:

- ``tfds:NAME[:SPLIT]``: a TensorFlow Datasets dataset, e.g. ``tfds:cifar10`` or
  ``tfds:cifar10:train[:90%]`` (read from ``data_dir``; it must already be prepared there unless
  ``download=True``).
- ``PATH`` to a folder of class sub-folders (``keras.utils.image_dataset_from_directory`` layout):
  ``PATH/<class name>/<image>.{jpg,jpeg,png,bmp,gif}``; classes are the sorted folder names.
- ``PATH`` to a TFRecord file, a glob (``data/train-*.tfrecord``) or a folder holding ``*.tfrecord``
  / ``*.tfrec`` files: ``tf.train.Example`` records with ``image`` (encoded JPEG/PNG bytes) and
  ``label`` (int64) features. ``tfrecord:PATTERN`` forces this reading.
- ``synthetic[:N[:SEED]]``: a generated, deterministic, learnable shapes dataset (32x32 RGB, 5
  classes), for the demo and the tests; works offline.

Folders and TFRecords are checked up front: an undecodable image is an error naming it, or with
``on_bad_image="skip"`` it is left out and listed in `DataSource.skipped` / `Data.skipped`.

`open_source(spec)` gives a `DataSource` (unbatched ``(uint8 image, int32 label)`` examples plus what
is known about them); `split_validation` carves a deterministic validation subset out of it;
`make_pipeline` resizes/crops, caches, shuffles, batches, augments (core Keras layers: RandomFlip,
RandomTranslation, RandAugment, MixUp, CutMix) and prefetches. `load` does all three.

Images leave the pipeline as float32 RGB in [0, 255]; the models built by `keras_effconv.training`
carry their own rescaling layer, so the saved and exported models take raw pixels too.
"""

from keras_effconv.data.base import AUGMENTATIONS
from keras_effconv.data.base import AUTOTUNE
from keras_effconv.data.base import BAD_IMAGE_POLICIES
from keras_effconv.data.base import IMAGE_EXTENSIONS
from keras_effconv.data.base import SYNTHETIC_CLASSES
from keras_effconv.data.base import TFRECORD_EXTENSIONS
from keras_effconv.data.base import Data
from keras_effconv.data.base import DataError
from keras_effconv.data.base import DataSource
from keras_effconv.data.base import skipped_message
from keras_effconv.data.pipeline import build_augmenter
from keras_effconv.data.pipeline import load
from keras_effconv.data.pipeline import make_pipeline
from keras_effconv.data.pipeline import resize_and_crop
from keras_effconv.data.pipeline import resolve_image_size
from keras_effconv.data.pipeline import split_validation
from keras_effconv.data.pipeline import take_images
from keras_effconv.data.sources import open_source
from keras_effconv.data.synthetic import synthetic_shapes
from keras_effconv.data.tfrecords import data_errors
from keras_effconv.data.tfrecords import find_corrupt_tfrecord
from keras_effconv.data.tfrecords import scan_tfrecords
