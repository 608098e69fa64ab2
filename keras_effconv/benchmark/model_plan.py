"""What a model benchmark runs: the suites, the configuration, the groups of models timed in turn
and the table columns. `models.run_model_benchmark` measures what `plan` returns.

The twin of an Eff model (the keras model it is compared with) and each model's default input size
come from the registry (`keras_effconv.applications.registry`); nothing here restates them.
"""

import dataclasses

RUNTIMES = ("tf", "xla", "litert", "train")
RUNTIME_LABELS = {"tf": "TF", "xla": "XLA", "litert": "LiteRT", "train": "Train"}
IMAGENET_SIZE = 224  # models registered at this default size run at `image_size` / `train_image_size`


@dataclasses.dataclass(frozen=True)
class Suite:
    """The models of a suite (Eff models: their twins are added) and its ModelBenchConfig defaults."""

    models: tuple
    defaults: dict
    description: str


SUITES = {
    "imagenet": Suite(
        models=("EffResNet50", "EffResNet101", "EffVGG16", "MobileNetV2", "EfficientNetB0"),
        defaults={},
        description="EffResNet50/101, EffVGG16 and their twins, MobileNetV2, EfficientNetB0 at --image-size",
    ),
    "cifar": Suite(
        models=("EffResNet20", "EffResNet56", "EffSICNet8", "EffSICNet11", "MobileNetV2CIFAR"),
        defaults=dict(batches=(1, 256), litert_batches=(1,), runtimes=("tf", "litert", "train"), train_batch=128),
        description="EffResNet20/56 and their twins ResNet20/56, EffSICNet8/11, MobileNetV2CIFAR at 32x32: TF b1 and b256, "
                    "LiteRT b1, train b128",
    ),
}

QUICK = dict(  # < 3 minutes on a 2-core machine: b1 only, 3 runs, a small training step
    batches=(1,), litert_batches=(1,), train_image_size=64, train_batch=16, runs=3, warmup=1, train_runs=3,
    rounds=3, train_references=False, quick=True,  # reference train-graph tracing dominates a quick run
)


@dataclasses.dataclass
class ModelBenchConfig:
    suite: str = "imagenet"
    models: tuple = SUITES["imagenet"].models
    add_twins: bool = True  # also run the twin of every requested Eff model
    image_size: int = 224  # inference input of the ImageNet-size models; CIFAR-size ones run at their own
    batches: tuple = (1, 16)  # inference batch sizes for tf / xla
    litert_batches: tuple = (1, 16)
    runtimes: tuple = RUNTIMES
    train_image_size: int = 128  # training input of the ImageNet-size models
    train_batch: int = 32
    train_jit: bool = False  # compile the training step with XLA instead of the TF runtime
    train_references: bool = True  # also time the training step of the reference models
    runs: int = 10  # timed calls per cell, spread over `rounds`
    warmup: int = 2
    train_runs: int = 10
    rounds: int = 5  # rounds of timing the models of a group (Eff model, twin) in turn
    threads: int = None  # TF intra/inter-op threads and LiteRT threads; None = all cores
    quick: bool = False
    seed: int = 0

    @classmethod
    def for_suite(cls, suite="imagenet", quick=False, **overrides):
        """The suite's models and defaults, then the --quick ones, then `overrides`."""
        if suite not in SUITES:
            raise ValueError(f"`suite` must be one of {tuple(SUITES)}; received suite={suite!r}")
        values = dict(SUITES[suite].defaults, suite=suite, models=SUITES[suite].models)
        if quick:
            values.update(QUICK)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def quick_run(cls, **overrides):
        """`for_suite(quick=True)`: b1 only, 3 runs, a small training step."""
        return cls.for_suite(quick=True, **overrides)

    def validate(self):
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise ValueError(f"`runtimes` must be a subset of {RUNTIMES}; received runtimes={self.runtimes!r}")
        for name in ("image_size", "train_image_size", "train_batch", "runs", "train_runs", "warmup", "rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}")
        for name in ("batches", "litert_batches"):
            value = getattr(self, name)
            if any((not isinstance(b, int)) or b < 1 for b in value):
                raise ValueError(f"`{name}` must be positive ints; received {name}={value!r}")
        return self

    def train_label(self, sizes=None):
        """(key, label) of the training column; `sizes`: the training inputs of the planned models."""
        mode = "XLA" if self.train_jit else "TF"
        sizes = "/".join(str(s) for s in sorted(set(sizes or [self.train_image_size]), reverse=True))
        return f"train_b{self.train_batch}", f"Train b{self.train_batch}@{sizes} ({mode})"


@dataclasses.dataclass(frozen=True)
class Planned:
    """One model to measure: its role ("eff", "twin", "reference"), twin, and input sides."""

    name: str
    role: str
    twin: str
    image_size: int
    train_image_size: int


def _sizes(name, config, default_size):
    native = default_size(name)
    if native is None or native == IMAGENET_SIZE:
        return config.image_size, config.train_image_size
    return native, native  # a CIFAR-size family runs at the input it is built for


def plan(config, available, twin_of, default_size=lambda name: None):
    """[[Planned, ...], ...]: groups timed in turn, each an Eff model with its twin (if run) or one model.

    `twin_of(name)` and `default_size(name)` are the registry's (tests pass their own). A requested
    twin joins its Eff model's group wherever it is listed. ValueError for unknown names.
    """
    unknown = [name for name in config.models if name not in available]
    if unknown:
        raise ValueError(f"`models` must be registered model names; received unknown {unknown!r} "
                         f"(available: {', '.join(sorted(available))})")
    requested = list(dict.fromkeys(config.models))
    paired = {}  # twin -> its Eff model, for the twins that run
    for name in requested:
        twin = twin_of(name)
        if twin in available and (config.add_twins or twin in requested) and twin not in paired:
            paired[twin] = name
    groups = []
    for name in requested:
        if name in paired:
            continue  # measured in its Eff model's group
        twin = twin_of(name)
        group = [Planned(name, "eff" if twin else "reference", twin, *_sizes(name, config, default_size))]
        if paired.get(twin) == name:
            group.append(Planned(twin, "twin", None, *_sizes(twin, config, default_size)))
        groups.append(group)
    return groups


def columns(config, planned=()):
    """[(key, label)] of the timed columns, in table order (grouped by batch size, then training)."""
    cols = []
    batches = sorted(set(config.batches) | (set(config.litert_batches) if "litert" in config.runtimes else set()))
    for batch in batches:
        for runtime in ("tf", "xla", "litert"):
            if runtime not in config.runtimes:
                continue
            allowed = config.litert_batches if runtime == "litert" else config.batches
            if batch in allowed:
                cols.append((f"{runtime}_b{batch}", f"{RUNTIME_LABELS[runtime]} b{batch}"))
    if "train" in config.runtimes:
        cols.append(config.train_label([p.train_image_size for p in planned]))
    return cols
