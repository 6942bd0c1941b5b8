"""``lora``: train low-rank adapters beside the frozen encoder weights, plus the task heads.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
https://arxiv.org/abs/2106.09685: a frozen weight ``W`` (out, in) gets a trainable update
``(alpha / r) * B @ A`` with ``A`` (r, in) and ``B`` (out, r); ``B`` starts at zero, so training
starts exactly at the pretrained model. After training the update can be added into ``W``
(merged), and inference costs nothing extra.

The adapters come from ``peft`` (``inject_adapter_in_model``), which puts LoRA layers into the
transformers model in place: ``encoder.model`` stays a plain transformers model (its config,
layer groups, ``save_pretrained`` and export keep working), and only the adapted linear layers
change names (``query.weight`` -> ``query.base_layer.weight`` + ``query.lora_A/B.default``).

By default every linear layer of attention and feed-forward blocks is adapted (peft's
``all-linear``, resolved for each architecture): Dettmers et al. 2023 ("QLoRA", NeurIPS) found
that adapting all linear layers, not only the query/value projections of the original paper, is
what matches full fine-tuning; for MiniLM-L6 at r=8 that is 0.33 M trainable weights (1.5% of 22.7 M).

Checkpoints hold only the adapters, the weights this strategy leaves trainable (biases with
``bias``, LayerNorms with ``train_layer_norms``), the heads and the loss weighting: the rest is
rebuilt from the starting encoder (``encoder.name_or_path`` or ``transfer.init_from``).

Combinations: lora combines with strategies that only set the optimiser's groups
(``discriminative_lr``: layer-wise rates for the adapters). It refuses ``full`` (contradicts
it), ``freeze`` and ``gradual_unfreeze`` (they set which encoder weights train), ``l2_sp`` (the
base weights it anchors no longer move) and any strategy with a ``prepare`` phase (it changes
the encoder before training, so the starting encoder could not be rebuilt from its source).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from polytask.errors import ConfigError
from polytask.transfer.base import STRATEGIES, Strategy

BIAS_CHOICES = ("none", "all", "lora_only")
# Refused partners and why (see the module docstring); other members are checked by their hooks.
REFUSED = {
    "full": "full trains every encoder weight, lora only its adapters",
    "freeze": "freeze sets which encoder weights train, which is lora's job",
    "gradual_unfreeze": "gradual_unfreeze would unfreeze the base weights lora keeps fixed",
    "l2_sp": "l2_sp anchors the base weights, which lora never changes",
}


@dataclass
class LoraConfig:
    """Args:
    r: rank of each adapter (the update ``B @ A`` has rank at most r).
    alpha: scale; the update is multiplied by ``alpha / r``.
    dropout: dropout on each adapter's input while training.
    target_modules: the linear layers that get adapters: ``all-linear`` (every linear layer of
        attention and feed-forward blocks, for any architecture), or a list of module-name
        suffixes such as ``[query, value]`` (BERT/MiniLM; ``[q_lin, v_lin]`` for DistilBERT).
    bias: which encoder biases train too: ``none``, ``all``, or ``lora_only`` (those of the
        adapted layers).
    train_layer_norms: also train the encoder's LayerNorm weights (few weights, often helps).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: str | list[str] = "all-linear"
    bias: str = "none"
    train_layer_norms: bool = False

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be a whole number >= 1; got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0; got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")
        targets = self.target_modules
        if isinstance(targets, str):
            ok = bool(targets.strip())
        else:
            ok = isinstance(targets, list) and bool(targets) and all(isinstance(t, str) and t for t in targets)
        if not ok:
            raise ValueError(
                "target_modules must be 'all-linear' or a non-empty list of module names such as "
                f"[query, value]; got {targets!r}"
            )
        if self.bias not in BIAS_CHOICES:
            raise ValueError(f"bias must be one of {', '.join(BIAS_CHOICES)}; got {self.bias!r}")


def strategy_names(transfer: Any) -> list[str]:
    """The strategy names of a ``transfer`` config section, as a list."""
    return [transfer.strategy] if isinstance(transfer.strategy, str) else list(transfer.strategy)


def uses_lora(cfg: Any) -> bool:
    """True when an experiment config trains with the ``lora`` strategy."""
    return "lora" in strategy_names(cfg.transfer)


def _is_adapter(name: str) -> bool:
    return ".lora_" in name


@STRATEGIES.register("lora")
class Lora(Strategy):
    """Freeze the encoder, inject LoRA adapters into its linear layers; adapters + heads train."""

    options_class = LoraConfig
    saves_full_model = False

    def __init__(self, options: LoraConfig | None = None):
        super().__init__(options or LoraConfig())
        self._kept: set[str] | None = None  # encoder state keys that train (set by setup)
        self._checked = False

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Refuse, from the config alone, what setup would refuse later.

        Raises:
            ConfigError: the encoder is not a transformer, or another strategy in
                ``transfer.strategy`` cannot be combined with lora.
        """
        if cfg.encoder.type != "transformer":
            raise ConfigError(_not_transformer(f"encoder.type is {cfg.encoder.type!r}"), field="transfer.strategy")
        cls.check_combination(strategy_names(cfg.transfer))

    @classmethod
    def check_combination(cls, names: list[str]) -> None:
        """Raise ConfigError when a strategy in ``names`` cannot be combined with lora."""
        for name in names:
            if name == "lora":
                continue
            reason = REFUSED.get(name)
            if reason is None:
                other = STRATEGIES.get(name, field="transfer.strategy")
                if other.prepare is not Strategy.prepare:
                    reason = (f"{name} changes the encoder before training, and a lora checkpoint "
                              "rebuilds the encoder from its source")
            if reason is not None:
                raise ConfigError(
                    f"lora cannot be combined with {name}: {reason}. Remove {name} (lora combines "
                    "with strategies that only set learning rates, such as discriminative_lr)",
                    field="transfer.strategy",
                )

    def setup(self, model: nn.Module, anchor: dict[str, torch.Tensor] | None = None) -> None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import inject_adapter_in_model

        from polytask.encoders.transformer import TransformerEncoder

        encoder = model.encoder
        if not isinstance(encoder, TransformerEncoder):
            raise ConfigError(_not_transformer(f"the encoder is {type(encoder).__name__}"), field="transfer.strategy")
        if any(_is_adapter(n) for n, _ in encoder.named_parameters()):
            raise ConfigError("lora is listed twice, or its setup ran twice; list it once", field="transfer.strategy")
        o = self.options
        peft_config = PeftLoraConfig(
            r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, bias=o.bias,
            target_modules=list(o.target_modules) if isinstance(o.target_modules, list) else o.target_modules,
        )
        try:
            # In place: freezes every encoder weight but the adapters (and biases per ``bias``).
            inject_adapter_in_model(peft_config, encoder.model)
        except ValueError as exc:  # e.g. no module matches target_modules
            raise ConfigError(
                f"cannot add LoRA adapters to {type(encoder.model).__name__}: {exc}. Set "
                "target_modules to names of its linear layers, or leave it at all-linear",
                field="transfer.options.lora.target_modules",
            ) from exc
        _drop_peft_config(encoder.model)
        if o.train_layer_norms:
            for name, p in encoder.named_parameters():
                if "layernorm" in name.lower() or "layer_norm" in name.lower():
                    p.requires_grad_(True)
        if not any(_is_adapter(n) for n, _ in encoder.named_parameters()):
            raise ConfigError(
                f"target_modules {o.target_modules!r} matched no linear layer of {type(encoder.model).__name__}; "
                "name its linear layers (e.g. [query, value] for BERT) or use all-linear",
                field="transfer.options.lora.target_modules",
            )
        self._kept = {f"encoder.{n}" for n, p in encoder.named_parameters() if p.requires_grad}

    def on_step(self, model: nn.Module, step: int, steps_per_epoch: int) -> None:
        # A guard for partners that change requires_grad (freeze, gradual_unfreeze) when the
        # combination was not refused from the config: checked once, before the first step.
        if self._checked or self._kept is None:
            return
        self._checked = True
        now = {f"encoder.{n}" for n, p in model.encoder.named_parameters() if p.requires_grad}
        if now != self._kept:
            raise ConfigError(
                "another strategy in transfer.strategy changed which encoder weights train "
                f"({len(now - self._kept)} base weights unfrozen, {len(self._kept - now)} adapter "
                "weights frozen); lora combines only with strategies that set learning rates, "
                "such as discriminative_lr",
                field="transfer.strategy",
            )

    def checkpoint_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Adapters, the other encoder weights lora trains, heads and weighting; no base weights."""
        if self._kept is None:
            raise RuntimeError("lora: checkpoint_state called before setup")
        return {k: v for k, v in state.items() if not k.startswith("encoder.") or k in self._kept}

    def restore(self, model: nn.Module) -> None:
        """A loaded lora run is its base encoder with the adapters put back in."""
        self.setup(model)

    def merge(self, model: nn.Module) -> None:
        merge_adapters(model.encoder.model)


def _not_transformer(what: str) -> str:
    return (f"lora needs a transformer encoder (encoder.type: transformer), but {what}; "
            "choose another transfer.strategy (e.g. full or freeze) for this encoder")


def _drop_peft_config(hf_model: nn.Module) -> None:
    # peft leaves its config on the model; transformers would otherwise treat the model as a
    # peft-loaded one in some code paths. polytask keeps the options in its own config.
    if "peft_config" in vars(hf_model):
        del hf_model.peft_config


def merge_adapters(module: nn.Module) -> int:
    """Add every LoRA update into its base weight and put the plain layer back in its place.

    ``W <- W + (alpha / r) * B @ A`` for each adapted layer; afterwards ``module`` holds no peft
    layers (its state dict has the original names), and its outputs equal the unmerged ones up
    to float rounding. Returns the number of layers merged.
    """
    from peft.tuners.lora import LoraLayer

    adapted = [(name, layer) for name, layer in module.named_modules() if isinstance(layer, LoraLayer)]
    for name, layer in adapted:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, layer.get_base_layer())
    _drop_peft_config(module)
    return len(adapted)
