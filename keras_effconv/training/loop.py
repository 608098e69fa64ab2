"""`train` (data, output folder, resume, fit, run.json) and `evaluate`."""

import contextlib
import dataclasses
import math
import os
import shutil
import tempfile

import keras

from keras_effconv import data as data_lib
from keras_effconv._paths import check_output_folder
from keras_effconv._paths import clean_stale_temporaries
from keras_effconv.training import distill
from keras_effconv.training import distributed
from keras_effconv.training import resume
from keras_effconv.training import tta
from keras_effconv.training.callbacks import AtomicCheckpoint
from keras_effconv.training.callbacks import EMAWeights
from keras_effconv.training.callbacks import EpochTimer
from keras_effconv.training.callbacks import _write_json_atomic
from keras_effconv.training.callbacks import tensorboard_callback
from keras_effconv.training.cluster import is_chief
from keras_effconv.training.config import TrainResult
from keras_effconv.training.distributed import LOOPS
from keras_effconv.training.models import build_model
from keras_effconv.training.models import compile_for_eval
from keras_effconv.training.models import load_model
from keras_effconv.training.models import model_names
from keras_effconv.training.models import outputs_are_probabilities
from keras_effconv.training.optim import OPTIMIZERS
from keras_effconv.training.optim import STRATEGIES
from keras_effconv.training.optim import make_optimizer
from keras_effconv.training.optim import make_schedule
from keras_effconv.training.optim import make_strategy


def backup_epoch(output):
    """The epoch a run in `output` would resume at (0 when there is no backup)."""
    state = resume.backup_state(os.path.join(output, "backup"))
    return int(state["epoch"]) if state else 0


def _prepare_output(config):
    output = config.output
    resume = backup_epoch(output) if os.path.isdir(output) else 0
    finished = os.path.exists(os.path.join(output, "last.keras")) and not os.path.isdir(os.path.join(output, "backup"))
    if finished and not config.overwrite:
        raise ValueError(
            f"output folder {output!r} already holds a finished run (last.keras); "
            "pass --overwrite to replace it or choose another --output"
        )
    if finished or (config.overwrite and not resume):
        for name in ("best.keras", "last.keras", "best.json", "log.csv", "run.json"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(output, name))
        shutil.rmtree(os.path.join(output, "tensorboard"), ignore_errors=True)
        shutil.rmtree(os.path.join(output, "backup"), ignore_errors=True)
    os.makedirs(output, exist_ok=True)
    for name in ("best.keras", "last.keras"):  # temporaries of a run killed while saving
        clean_stale_temporaries(os.path.join(output, name))
    return resume


def train(config, strategy=None, callbacks=(), log=print):
    """Train `config.model` on `config.data`; returns a `TrainResult`. Resumes from OUTPUT/backup."""
    if config.model not in model_names():
        raise ValueError(f"Unknown model name={config.model!r}; available: {', '.join(model_names())}")
    for name, value, allowed in (
        ("optimizer", config.optimizer, OPTIMIZERS),
        ("strategy", config.strategy, STRATEGIES),
        ("augment", config.augment, data_lib.AUGMENTATIONS),
        ("loop", config.loop, LOOPS),
        ("on_bad_image", config.on_bad_image, data_lib.BAD_IMAGE_POLICIES),
    ):
        if value not in allowed:
            raise ValueError(f"`{name}` must be one of {allowed}; received {name}={value!r}")
    config.validate()
    check_output_folder(config.output, "output folder")  # before any work, not at the first checkpoint
    strategy = strategy or make_strategy(config.strategy, timeout_seconds=config.worker_timeout)
    for flag, value in (("--distill-from", config.distill_from), ("--ema", config.ema)):
        if value and distributed.uses_custom_loop(config, strategy):
            raise ValueError(f"{flag} {value!r} is not supported by the custom training loop "
                             "(--loop custom, multi-worker runs); use --loop fit on one host")
    chief = is_chief(strategy)
    backup_dir = os.path.join(config.output, "backup")
    tmp_output = None
    if not chief:
        # Non-chief workers (custom loop) write their logs and models to a scratch folder and read the
        # chief's checkpoint in OUTPUT/backup to resume at the same epoch.
        tmp_output = tempfile.mkdtemp(prefix="effconv-worker-")
        config = dataclasses.replace(config, output=tmp_output)
    data = data_lib.load(
        config.data,
        batch_size=config.batch_size,
        image_size=config.image_size,
        num_classes=config.classes,
        val_split=0.0 if config.val_data else config.val_split,
        val_data=config.val_data,
        split=config.split,
        data_dir=config.data_dir,
        download=config.download,
        augment=config.augment,
        mixup=config.mixup,
        cutmix=config.cutmix,
        cache=config.cache,
        shuffle_buffer=config.shuffle_buffer,
        seed=config.seed,
        on_bad_image=config.on_bad_image,
    )
    created = not os.path.exists(config.output)
    initial_epoch = _prepare_output(config)
    try:
        return _fit(config, strategy, data, initial_epoch, callbacks, log, backup_dir, chief)
    except BaseException:
        # A run that fails before finishing its first epoch leaves nothing behind.
        if created and chief and not os.path.exists(os.path.join(config.output, "last.keras")):
            shutil.rmtree(config.output, ignore_errors=True)
        raise
    finally:
        if tmp_output:
            shutil.rmtree(tmp_output, ignore_errors=True)


def _fit(config, strategy, data, initial_epoch, callbacks, log, backup_dir, chief=True):
    steps_per_epoch = math.ceil(data.num_train / config.batch_size)
    train_ds = data.train
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, int(config.steps_per_epoch))
        train_ds = train_ds.take(steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    lr = config.lr if config.lr is not None else config.default_lr()
    input_shape = tuple(data.image_size) + (3,)
    custom = distributed.uses_custom_loop(config, strategy)
    if config.distill_from:  # outside the strategy scope: it runs in the input pipeline, never trained
        teacher = distill.load_teacher(config.distill_from, input_shape, data.num_classes)
        train_ds = distill.distill_dataset(train_ds, teacher, config.distill_weight)

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config.model, input_shape, data.num_classes)
        from_logits = not outputs_are_probabilities(model)
        schedule = make_schedule(lr, total_steps, round(config.warmup_epochs * steps_per_epoch))
        optimizer = make_optimizer(config.optimizer, schedule, config.weight_decay, config.momentum,
                                   config.depthwise_decay, config.ema)
        model.compile(  # the custom loop too: the saved models carry the same compile config
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=config.jit_compile,
        )

    monitor = "val_accuracy" if data.validation is not None else "accuracy"
    rows = []
    if not custom:  # records of epochs the backup does not hold (a kill before its commit) go: training.resume
        rows = resume.reconcile_logs(config.output, initial_epoch, steps_per_epoch)
    resume_row = (int(rows[-1]["epoch"]), resume.row_metrics(rows[-1])) if rows else None
    ema = EMAWeights(data.make_calibration() if data.make_calibration else None) if config.ema else None
    checkpoint = AtomicCheckpoint(config.output, monitor=monitor, mode="max", resume_row=resume_row, ema=ema)
    loggers = [
        EpochTimer(), "batch",
        keras.callbacks.CSVLogger(os.path.join(config.output, "log.csv"), append=True), "log",
        tensorboard_callback(os.path.join(config.output, "tensorboard")), "tensorboard",
    ]
    log(
        f"Training {config.model} ({model.count_params():,} params, input {input_shape}, "
        f"{data.num_classes} classes) on {data.description}: {data.num_train} train / "
        f"{data.num_validation} validation examples, {config.epochs} epochs x {steps_per_epoch} steps, "
        f"batch {config.batch_size}, {config.optimizer} lr {lr:g}, {strategy.num_replicas_in_sync} replica(s)"
        + (f", {distill.describe(config.distill_from, config.distill_weight)}" if config.distill_from else "")
    )
    if data.skipped:
        log(data_lib.skipped_message(data.skipped).capitalize())
    extra = {}
    if custom:  # the loop's CheckpointManager saves after these callbacks
        history, initial_epoch, throughput = distributed.run_loop(
            config, strategy, data, train_ds, model, optimizer, from_logits,
            resume.with_kill_points([*loggers, checkpoint, *callbacks]), log, backup_dir, chief,
        )
        extra["throughput"] = {**throughput, "replicas": strategy.num_replicas_in_sync}
    else:
        if initial_epoch:
            log(f"Resuming from epoch {initial_epoch + 1}/{config.epochs} (backup in {backup_dir})")
        all_callbacks = resume.with_kill_points([  # epoch-end order: logs, the commit (raw weights), checkpoints
            *loggers, resume.AtomicBackupAndRestore(backup_dir), "backup", *([ema] if ema else []),
            checkpoint, "checkpoint", *callbacks,
        ])
        with data_lib.data_errors(data.files):
            history = model.fit(
                train_ds,
                validation_data=data.validation,
                epochs=config.epochs,
                callbacks=all_callbacks,
                verbose=config.verbose,
                shuffle=False,  # the pipeline shuffles
            ).history
    _, rows = resume.read_log(os.path.join(config.output, "log.csv"))
    metrics = {key: float(values[-1]) for key, values in history.items() if values}
    if not metrics and rows:  # resumed after the last epoch's commit: nothing left to run
        metrics = resume.row_metrics(rows[-1])
    if not os.path.exists(checkpoint.best_path):  # e.g. a NaN metric all along: keep the last model
        shutil.copyfile(checkpoint.last_path, checkpoint.best_path)
    best_scores = {}
    if data.validation is not None and config.tta != "none":  # flip, and with flip-translate that too
        best_model = load_model(checkpoint.best_path)
        for views in tta.VIEWS[1:tta.VIEWS.index(config.tta) + 1]:
            best_scores[tta.score_key(views)] = tta.evaluate_tta(best_model, data.validation, views, files=data.files)
        log(f"Best checkpoint: val_accuracy {checkpoint.best:.4f}, with TTA "
            + ", ".join(f"{key.removeprefix('val_accuracy_')} {value:.4f}" for key, value in best_scores.items()))
    result = TrainResult(
        model=model,
        history={k: [float(v) for v in vs] for k, vs in history.items()},
        output=config.output,
        best_path=checkpoint.best_path,
        last_path=checkpoint.last_path,
        best_epoch=checkpoint.best_epoch,
        metrics=metrics,
        initial_epoch=initial_epoch,
        num_train=data.num_train,
        num_validation=data.num_validation,
        class_names=data.class_names,
        input_shape=input_shape,
    )
    run_info = {
        "config": dataclasses.asdict(config),
        "input_shape": input_shape,
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "num_train": data.num_train,
        "num_validation": data.num_validation,
        "best": {"epoch": checkpoint.best_epoch, monitor: checkpoint.best, **best_scores, "path": checkpoint.best_path},
        "last": {"path": checkpoint.last_path, **metrics},
        "epochs": [{"epoch": int(row["epoch"]), **resume.row_metrics(row)} for row in rows],
        **extra,
    }
    resume.kill_point("run_json", config.epochs - 1)
    _write_json_atomic(os.path.join(config.output, "run.json"), run_info)
    resume.kill_point("finish", config.epochs - 1)
    if chief:  # the run is complete: nothing to resume (a non-chief's backup_dir is the chief's)
        shutil.rmtree(backup_dir, ignore_errors=True)
    return result


def evaluate(model, dataset, verbose=0, files=()):
    """{"loss", "accuracy"} of `model` on a pipeline from `data.make_pipeline`."""
    compile_for_eval(model)
    with data_lib.data_errors(files):
        results = model.evaluate(dataset, return_dict=True, verbose=verbose)
    return {k: float(v) for k, v in results.items()}
