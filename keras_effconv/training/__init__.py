"""Training and evaluation loop behind `effconv train` / `effconv evaluate` / `effconv demo`.

`train(TrainConfig(...))` builds a registered model (plus a pixel-rescaling input layer, so saved
models take raw RGB pixels in [0, 255]), compiles it under a `tf.distribute` strategy with SGD or
AdamW and a warmup + cosine learning-rate schedule, and fits it with:

- atomic checkpoints ``best.keras`` / ``last.keras`` (saved to a temporary name, then `os.replace`),
- a backup in ``OUTPUT/backup`` committed atomically each epoch (`training.resume`): a run killed at any
  moment and started again with the same command resumes at the first unfinished epoch (weights,
  optimizer state and LR schedule step), and its logs hold each epoch once,
- ``log.csv`` (`CSVLogger`, appended across resumes) and TensorBoard event files in ``OUTPUT/tensorboard``
  (the Keras TensorBoard callback when the `tensorboard` package is installed, else scalar summaries
  written with TF core ops that TensorBoard reads the same way),
- ``run.json``: the configuration, class names, input shape and final metrics.
"""

from keras_effconv.training.callbacks import AtomicCheckpoint
from keras_effconv.training.callbacks import EMAWeights
from keras_effconv.training.callbacks import EpochTimer
from keras_effconv.training.callbacks import ScalarSummaries
from keras_effconv.training.callbacks import batchnorm_layers
from keras_effconv.training.callbacks import batchnorm_statistics
from keras_effconv.training.callbacks import reestimate_batchnorm
from keras_effconv.training.callbacks import save_atomic
from keras_effconv.training.callbacks import tensorboard_callback
from keras_effconv.training.cluster import PeerFailure
from keras_effconv.training.cluster import is_chief
from keras_effconv.training.cluster import parse_tf_config
from keras_effconv.training.config import TrainConfig
from keras_effconv.training.config import TrainResult
from keras_effconv.training.loop import backup_epoch
from keras_effconv.training.loop import evaluate
from keras_effconv.training.loop import train
from keras_effconv.training.models import DEMO_MODEL
from keras_effconv.training.models import LOCAL_MODELS
from keras_effconv.training.models import build_model
from keras_effconv.training.models import compile_for_eval
from keras_effconv.training.models import demo_cnn
from keras_effconv.training.models import load_model
from keras_effconv.training.models import model_names
from keras_effconv.training.models import outputs_are_probabilities
from keras_effconv.training.optim import OPTIMIZERS
from keras_effconv.training.optim import STRATEGIES
from keras_effconv.training.optim import configure_virtual_devices
from keras_effconv.training.optim import make_optimizer
from keras_effconv.training.optim import make_schedule
from keras_effconv.training.optim import make_strategy
from keras_effconv.training.tta import evaluate_tta
from keras_effconv.training.tta import tta_predict
