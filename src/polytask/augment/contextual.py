"""``contextual``: replace words by what a masked language model predicts in their place.

Kobayashi, "Contextual Augmentation: Data Augmentation by Words with Paradigmatic Relations",
NAACL 2018 (https://arxiv.org/abs/1805.06201), with a bidirectional language model; Wu et al.,
"Conditional BERT Contextual Augmentation", ICCS 2019 (https://arxiv.org/abs/1812.06705), with
BERT's masked-LM head. ``n = max(1, alpha * words)`` content words are masked together (one mask
per word), the model is run once, and each mask is filled by a word sampled from the model's
``top_k`` whole-word predictions (other than the original word) with probabilities at
``temperature``. Sampling uses the caller's ``rng``, so copies are reproducible.

Any transformers masked-LM folder works (``*ForMaskedLM``), e.g. the ``model/`` folder of a
``polytask pretrain`` result (which may itself be given). For token classification only ``O``
words are replaced, one word by one word, so tags stay aligned.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.augment._models import describe, is_polytask_run, read_hf_config
from polytask.augment.base import (
    AUGMENTERS,
    OUTSIDE,
    Augmenter,
    check_rate,
    is_content_word,
    match_case,
    n_changes,
    split_core,
)
from polytask.errors import ConfigError


@dataclass
class ContextualConfig:
    """Options of ``contextual``.

    Args:
        model: a transformers masked-LM folder, or a ``polytask pretrain`` output folder.
        alpha: the fraction of words replaced (at least one when above 0).
        top_k: replacements are drawn from the model's this-many most likely whole words.
        temperature: softmax temperature of the draw (lower: more likely words).
        max_length: tokens fed to the model (words beyond are never replaced).
        device: where the model runs (``cpu``, ``cuda``).
    """

    model: str = ""
    alpha: float = 0.15
    top_k: int = 10
    temperature: float = 1.0
    max_length: int = 256
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("contextual needs model: a masked language model folder (a transformers "
                             "*ForMaskedLM folder, or the output folder of polytask pretrain)")
        check_rate("alpha", self.alpha)
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1; got {self.top_k}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be above 0; got {self.temperature}")


def mlm_folder(model: str, field: str = "contextual.model") -> Path:
    """The masked-LM folder ``model`` names (a pretrain result's ``model/`` when given the result),
    or ConfigError saying why it is not one.

    Args:
        model: the ``model`` option.
        field: its config path, named in messages.
    """
    path = Path(model).expanduser()
    if (path / "model" / "config.json").is_file() and not (path / "config.json").is_file():
        path = path / "model"  # a polytask pretrain output folder
    if is_polytask_run(path):
        raise ConfigError(
            f"{str(path)!r} is a polytask training run: its encoder has no language-model head; give a "
            "masked language model (the output of polytask pretrain, or a transformers *ForMaskedLM folder)",
            field=field,
        )
    config = read_hf_config(path, field)
    archs = config.get("architectures") or []
    if not any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs):
        raise ConfigError(
            f"{str(path)!r} holds {describe(config)}, not a masked language model; contextual substitution "
            "needs a *ForMaskedLM folder (e.g. the output of polytask pretrain)",
            field=field,
        )
    return path


@functools.lru_cache(maxsize=2)
def _load(path: str, device: str) -> tuple[Any, Any, Any]:
    """(model, tokenizer, allowed) with ``allowed`` a (V,) bool tensor of whole-word tokens."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path).to(device).eval()
    vocab = model.get_output_embeddings().weight.shape[0]
    allowed = torch.zeros(vocab, dtype=torch.bool)
    special = set(tokenizer.all_special_ids)
    for token, idx in tokenizer.get_vocab().items():
        if idx >= vocab or idx in special or token.startswith("##"):
            continue  # "##x" continues a word: it cannot stand alone as a replacement
        word = token.lstrip("\u2581\u0120")  # sentencepiece / byte-level word-start marks
        allowed[idx] = word.isalpha()
    return model, tokenizer, allowed


@AUGMENTERS.register("contextual")
class Contextual(Augmenter):
    """Mask ``alpha`` of the words and fill each with a masked-LM prediction."""

    options_class = ContextualConfig
    token_level_ok = True

    def __init__(self, options: ContextualConfig):
        super().__init__(options)
        self.folder: Path | None = None  # set by check (once), not per example

    def check(self, field: str) -> None:
        self.folder = mlm_folder(self.options.model, f"{field}.model")

    def augment_text(self, text: str, rng: random.Random) -> str:
        words = text.split()
        return " ".join(self._replace(words, [True] * len(words), rng))

    def augment_tokens(self, words, tags, rng):  # noqa: ANN001, ANN201
        if tags is None:  # unlabelled: nothing says which words are entities, so none is touched
            return list(words), None
        return self._replace(list(words), [t == OUTSIDE for t in tags], rng), list(tags)

    def _replace(self, words: list[str], allowed: list[bool], rng: random.Random) -> list[str]:
        import torch

        o = self.options
        candidates = [i for i, w in enumerate(words) if allowed[i] and is_content_word(split_core(w)[1])]
        n = min(n_changes(o.alpha, len(words)), len(candidates))
        if n == 0:
            return words
        chosen = sorted(rng.sample(candidates, n))
        model, tokenizer, ok = _load(str(self.folder or mlm_folder(o.model)), o.device)
        masked = list(words)
        for i in chosen:
            pre, _, post = split_core(words[i])
            masked[i] = f"{pre}{tokenizer.mask_token}{post}"
        enc = tokenizer(" ".join(masked), truncation=True, max_length=o.max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v.to(o.device) for k, v in enc.items()}).logits[0]  # (T, V)
        where = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
        out = list(words)
        for i, pos in zip(chosen, where, strict=False):  # masks cut off by max_length stay as they were
            pre, core, post = split_core(words[i])
            scores = logits[pos].float().cpu() / o.temperature  # (V,)
            scores[~ok] = float("-inf")
            own = tokenizer.convert_tokens_to_ids(core.lower())
            if isinstance(own, int) and 0 <= own < scores.shape[0] and own != tokenizer.unk_token_id:
                scores[own] = float("-inf")  # the original word is no augmentation
            top = scores.topk(min(o.top_k, int(ok.sum()))).indices  # (k,)
            weights = scores[top].softmax(-1).tolist()
            pick = int(top[rng.choices(range(len(weights)), weights=weights)[0]])
            word = tokenizer.convert_ids_to_tokens(pick).lstrip("\u2581\u0120")
            out[i] = pre + match_case(word, core) + post
        return out
