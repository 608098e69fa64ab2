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

from keras_effconv.training.callbacks import AtomicCheckpoint, EpochTimer, ScalarSummaries, save_atomic, tensorboard_callback
from keras_effconv.training.cluster import PeerFailure, is_chief, parse_tf_config
from keras_effconv.training.config import TrainConfig, TrainResult
from keras_effconv.training.loop import backup_epoch, evaluate, evaluate_flip, train
from keras_effconv.training.models import (
    DEMO_MODEL,
    LOCAL_MODELS,
    build_model,
    compile_for_eval,
    demo_cnn,
    load_model,
    model_names,
    outputs_are_probabilities,
)
from keras_effconv.training.optim import (
    OPTIMIZERS,
    STRATEGIES,
    configure_virtual_devices,
    make_optimizer,
    make_schedule,
    make_strategy,
)
