"""``drop_layers``: a shallower transformer made from some of the pretrained encoder's layers.

Structural shrinking without distillation (Sajjad, Dalvi, Durrani & Nakov, "On the effect of
dropping layers of pre-trained transformer models", Computer Speech & Language 2023,
https://arxiv.org/abs/2004.03844): keep the embeddings and a chosen subset of the layers, in
order, and fine-tune the result as usual. Dropping the top layers kept most of the accuracy in
their study; keeping every other layer is DistilBERT's initialisation (Sanh et al. 2019). It is
the cheap baseline a distilled student must beat, and the usual starting point of one
(``polytask distill`` with a student that drops layers).

The layers go once, on a fresh run, before the optimiser is built; the run's ``encoder/`` files
then describe the shallower model (``num_hidden_layers``), so the run reloads, resumes, exports
and serves like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from polytask.errors import ConfigError
from polytask.transfer.base import STRATEGIES, Strategy

FIELD = "transfer.options.drop_layers"


@dataclass
class DropLayersConfig:
    """Which layers stay (exactly one of the four).

    Args:
        keep: the 0-based indices of the layers kept, e.g. ``[0, 2, 4]`` (sorted, no repeats).
        bottom: keep the lowest k layers (drop the top ones: Sajjad et al.'s best choice).
        top: keep the highest k layers.
        every_other: keep layers 0, 2, 4, ... (DistilBERT's initialisation).
    """

    keep: list[int] | None = None
    bottom: int | None = None
    top: int | None = None
    every_other: bool = False


def kept_layers(options: DropLayersConfig, n_layers: int) -> list[int]:
    """The indices ``options`` keep out of ``n_layers``; a ConfigError naming the field otherwise."""
    chosen = [name for name in ("keep", "bottom", "top") if getattr(options, name) is not None]
    chosen += ["every_other"] if options.every_other else []
    if len(chosen) != 1:
        raise ConfigError(
            f"drop_layers needs exactly one of keep, bottom, top, every_other (got {', '.join(chosen) or 'none'}); "
            "e.g. transfer.options.drop_layers.keep: [0, 2, 4]", field=FIELD)
    if options.every_other:
        return list(range(0, n_layers, 2))
    if options.keep is not None:
        keep = options.keep
        if not isinstance(keep, list) or not keep or not all(isinstance(i, int) and not isinstance(i, bool)
                                                             for i in keep):
            raise ConfigError(f"keep must be a non-empty list of layer indices; got {keep!r}", field=f"{FIELD}.keep")
        bad = [i for i in keep if not 0 <= i < n_layers]
        if bad:
            raise ConfigError(
                f"keep: layer {bad[0]} is out of range; this encoder has {n_layers} layers, so valid indices are "
                f"0 to {n_layers - 1}", field=f"{FIELD}.keep")
        if sorted(set(keep)) != keep:
            raise ConfigError(f"keep must be sorted with no repeats (layers stay in order); got {keep}",
                              field=f"{FIELD}.keep")
        return list(keep)
    name = "bottom" if options.bottom is not None else "top"
    k = getattr(options, name)
    if not isinstance(k, int) or not 1 <= k <= n_layers:
        raise ConfigError(f"{name} must be a whole number from 1 to {n_layers} (this encoder's layers); got {k!r}",
                          field=f"{FIELD}.{name}")
    return list(range(k)) if name == "bottom" else list(range(n_layers - k, n_layers))


def layer_list(encoder: nn.Module) -> nn.ModuleList:
    """The transformer's stack of layers (its longest ``ModuleList``)."""
    from polytask.encoders.transformer import _largest_module_list

    layers = _largest_module_list(encoder.model) if hasattr(encoder, "model") else None
    if layers is None:
        raise ConfigError("drop_layers needs a transformer encoder with a stack of layers", field="encoder.type")
    return layers


def drop_layers(encoder: nn.Module, keep: list[int]) -> None:
    """Keep only layers ``keep`` of a ``TransformerEncoder`` (in place); the model's config says so."""
    layers = layer_list(encoder)
    kept = nn.ModuleList([layers[i] for i in keep])
    for parent in encoder.model.modules():  # replace the list where it hangs
        for name, child in parent.named_children():
            if child is layers:
                setattr(parent, name, kept)
    for new_idx, layer in enumerate(kept):  # caches index layers by position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    config = encoder.model.config
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in keep]


def source_layer_count(cfg: Any) -> int | None:
    """How many layers the starting encoder has, read from its ``config.json`` (None if unknown)."""
    import json

    from polytask.encoders.transformer import resolve_source

    if cfg.transfer.init_from:
        from polytask.runs import find_checkpoint
        from polytask.training import checkpoint as ckpt

        try:
            folder = find_checkpoint(cfg.transfer.init_from) / ckpt.ENCODER_DIR
        except Exception:  # noqa: BLE001 - init_from reports its own errors later
            return None
    else:
        folder = Path(resolve_source(cfg.encoder.name_or_path))
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a hub id: known once the model loads (checked again in prepare)
    n = data.get("num_hidden_layers", data.get("n_layers"))
    return int(n) if isinstance(n, int) else None


@STRATEGIES.register("drop_layers")
class DropLayers(Strategy):
    """Remove the layers not kept from the encoder, then fine-tune everything."""

    options_class = DropLayersConfig

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if cfg.encoder.type != "transformer":
            raise ConfigError(f"drop_layers works on transformer encoders; encoder.type is {cfg.encoder.type!r}",
                              field="encoder.type")
        names = [cfg.transfer.strategy] if isinstance(cfg.transfer.strategy, str) else cfg.transfer.strategy
        if "lora" in names:
            raise ConfigError("drop_layers cannot be combined with lora (a lora run is rebuilt from its full-depth "
                              "base model); drop layers in one run, then start a lora run from it with "
                              "transfer.init_from", field="transfer.strategy")
        from polytask.options import build_options

        options = build_options(DropLayersConfig, cfg.transfer.options.get("drop_layers", {}), name="drop_layers",
                                kind="transfer strategy", field=FIELD)
        n = source_layer_count(cfg)
        kept_layers(options, n if n is not None else 10**6)  # the spec's shape now; the range too when known

    def prepare(self, model: nn.Module, tasks: dict[str, Any], train_features: dict[str, list[dict[str, Any]]],
                pad_id: int, accelerator: Any, progress: bool = True) -> None:
        keep = kept_layers(self.options or DropLayersConfig(), len(layer_list(model.encoder)))
        drop_layers(model.encoder, keep)
