"""`TrainConfig` (the arguments of a run) and `TrainResult` (what it produced)."""

import dataclasses
import math

import keras


@dataclasses.dataclass
class TrainConfig:
    model: str = "DemoCNN"
    data: str = "synthetic"
    output: str = "effconv-run"
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = None  # default: 0.1 * batch/256 for SGD, 1e-3 for AdamW
    momentum: float = 0.9
    weight_decay: float = 5e-4
    depthwise_decay: bool = False  # weight decay on depthwise kernels too
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    ema: float = 0.0  # momentum of a moving average of the weights, validated and checkpointed; 0: off
    augment: str = "basic"
    mixup: float = 0.0
    cutmix: float = 0.0
    val_split: float = 0.1
    val_data: str = None
    image_size: tuple = None  # (H, W); default: the data's image size
    classes: int = None  # default: the data's number of classes
    strategy: str = "default"  # default (multiworker when TF_CONFIG is set), mirrored, multiworker
    loop: str = "auto"  # auto (fit; the custom loop for multi-worker), fit, custom
    worker_timeout: float = 600.0  # multi-worker: give up after this many seconds without progress
    split: str = "train"
    data_dir: str = None
    download: bool = False
    cache: bool = True
    shuffle_buffer: int = 10000
    steps_per_epoch: int = None  # cap (for quick runs); default: one pass over the training data
    seed: int = 0
    jit_compile: bool = False
    tta: str = "flip"  # test-time augmentation of the best checkpoint's validation score: training.tta.VIEWS
    on_bad_image: str = "error"  # undecodable images: "error" (named, before training) or "skip"
    distill_from: str = None  # teacher: MODEL:PRESET or a .keras file (training.distill); None: no distillation
    distill_weight: float = 0.5  # A in the targets (1 - A) * y + A * p_teacher, in (0, 1]
    verbose: object = "auto"
    overwrite: bool = False

    def validate(self):
        """ValueError naming the field and value for any out-of-range number (before any work)."""
        checks = (
            ("epochs", self.epochs, int, 1, None),
            ("batch_size", self.batch_size, int, 1, None),
            ("shuffle_buffer", self.shuffle_buffer, int, 1, None),
            ("steps_per_epoch", self.steps_per_epoch, int, 1, None),
            ("classes", self.classes, int, 1, None),
            ("lr", self.lr, float, 0.0, None),
            ("momentum", self.momentum, float, 0.0, 1.0),
            ("weight_decay", self.weight_decay, float, 0.0, None),
            ("warmup_epochs", self.warmup_epochs, float, 0.0, None),
            ("label_smoothing", self.label_smoothing, float, 0.0, 1.0),
            ("ema", self.ema, float, 0.0, 1.0),
            ("mixup", self.mixup, float, 0.0, None),
            ("cutmix", self.cutmix, float, 0.0, None),
            ("val_split", self.val_split, float, 0.0, 1.0),
            ("worker_timeout", self.worker_timeout, float, 0.0, None),
        )
        for name, value, kind, low, high in checks:
            if value is None and name in ("steps_per_epoch", "classes", "lr"):
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (kind is float or float(value).is_integer())
            ok = ok and (value > low if name == "lr" else value >= low) and (high is None or value < high)
            if not ok:
                bounds = f"> {low:g}" if name == "lr" else f">= {low:g}" + (f" and < {high:g}" if high else "")
                kind_name = "an integer" if kind is int else "a number"
                raise ValueError(f"`{name}` must be {kind_name} {bounds}; received {name}={value!r}")
        from keras_effconv.training.distill import check_spec
        from keras_effconv.training.tta import check_views

        check_views(self.tta)
        check_spec(self.distill_from, self.distill_weight)

    def default_lr(self):
        return 1e-3 if self.optimizer == "adamw" else 0.1 * self.batch_size / 256


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    history: dict
    output: str
    best_path: str
    last_path: str
    best_epoch: int
    metrics: dict  # final-epoch metrics (loss, accuracy, val_loss, val_accuracy)
    initial_epoch: int  # > 0 when the run resumed from a backup
    num_train: int
    num_validation: int
    class_names: list
    input_shape: tuple
