"""``back_translation``: translate the text into a pivot language and back.

Back-translation comes from machine translation (Sennrich, Haddow & Birch, "Improving Neural
Machine Translation Models with Monolingual Data", ACL 2016, https://arxiv.org/abs/1511.06709);
as paraphrasing for classification it is the augmentation of UDA (Xie et al., "Unsupervised
Data Augmentation for Consistency Training", NeurIPS 2020, https://arxiv.org/abs/1904.12848),
which samples the translations for diversity. Two sequence-to-sequence models are needed:
``model`` (source -> pivot) and ``back_model`` (pivot -> source), each a transformers folder of a
translation model (``is_encoder_decoder``, e.g. a Marian ``opus-mt`` model saved locally) or a
polytask ``seq2seq`` run holding one. With ``sample: false`` (default) the beam search is
deterministic; with ``sample: true`` the draw is seeded from the caller's ``rng``. Sequence texts
only (a paraphrase has no word alignment for tags).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.augment._models import describe, is_polytask_run, read_hf_config, run_task_types
from polytask.augment.base import AUGMENTERS, Augmenter
from polytask.errors import ConfigError


@dataclass
class BackTranslationConfig:
    """Options of ``back_translation``.

    Args:
        model: the source -> pivot translation model (a transformers folder or a seq2seq run).
        back_model: the pivot -> source translation model.
        prefix: text put before the input of ``model`` (T5-style ``translate English to German: ``).
        back_prefix: text put before the input of ``back_model``.
        num_beams: beam size of each translation (1: greedy).
        sample: draw translations instead of searching (more varied paraphrases, as in UDA).
        top_k: with ``sample``, draw among this many most likely tokens.
        temperature: with ``sample``, the softmax temperature.
        max_length: tokens of each input and output.
        device: where the models run (``cpu``, ``cuda``).
    """

    model: str = ""
    back_model: str = ""
    prefix: str = ""
    back_prefix: str = ""
    num_beams: int = 1
    sample: bool = False
    top_k: int = 50
    temperature: float = 1.0
    max_length: int = 256
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.model or not self.back_model:
            raise ValueError("back_translation needs model (source -> pivot) and back_model (pivot -> source): "
                             "two translation model folders")
        if self.num_beams < 1 or self.top_k < 1 or self.max_length < 1:
            raise ValueError("num_beams, top_k and max_length must be at least 1")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be above 0; got {self.temperature}")


def _seq2seq_in_run(run: Path) -> Path | None:
    """The transformers seq2seq folder inside a polytask run, if it holds one."""
    for cand in sorted(run.glob("**/config.json")):
        try:
            import json

            if json.loads(cand.read_text(encoding="utf-8")).get("is_encoder_decoder"):
                return cand.parent
        except (OSError, ValueError):
            continue
    return None


def seq2seq_folder(model: str, field: str) -> Path:
    """The translation-model folder ``model`` names, or ConfigError saying why it is not one.

    Args:
        model: a transformers folder or a polytask run folder.
        field: the option it came from, named in messages.
    """
    path = Path(model).expanduser()
    if is_polytask_run(path):
        kinds = run_task_types(path)
        inner = _seq2seq_in_run(path) if any("seq2seq" in k for k in kinds) else None
        if inner is None:
            raise ConfigError(
                f"{str(path)!r} is a polytask run of {', '.join(kinds) or 'no task'}, not a seq2seq (translation) "
                "run; back-translation needs a translation model: a polytask seq2seq run, or a transformers "
                "translation model folder (e.g. a Marian opus-mt model saved with save_pretrained)",
                field=field,
            )
        return inner
    config = read_hf_config(path, field)
    if not config.get("is_encoder_decoder"):
        raise ConfigError(
            f"{str(path)!r} holds {describe(config)}, which is not a sequence-to-sequence model; back-translation "
            "needs a translation model folder (is_encoder_decoder: true, e.g. a Marian opus-mt model)",
            field=field,
        )
    return path


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    return AutoModelForSeq2SeqLM.from_pretrained(path).to(device).eval(), AutoTokenizer.from_pretrained(path)


@AUGMENTERS.register("back_translation")
class BackTranslation(Augmenter):
    """Paraphrase a text by a round trip through a pivot language."""

    options_class = BackTranslationConfig

    def __init__(self, options: BackTranslationConfig):
        super().__init__(options)
        self.folders: dict[str, Path] = {}  # option -> model folder, set by check (once)

    def check(self, field: str) -> None:
        for option in ("model", "back_model"):
            self.folders[option] = seq2seq_folder(getattr(self.options, option), f"{field}.{option}")

    def augment_text(self, text: str, rng: random.Random) -> str:
        o = self.options
        pivot = self._translate("model", o.prefix + text, rng)
        return self._translate("back_model", o.back_prefix + pivot, rng) or text

    def _translate(self, option: str, text: str, rng: random.Random) -> str:
        import torch

        o = self.options
        folder = self.folders.get(option) or seq2seq_folder(getattr(o, option), f"back_translation.{option}")
        model, tokenizer = _load(str(folder), o.device)
        enc = tokenizer(text, truncation=True, max_length=o.max_length, return_tensors="pt")
        enc = {k: v.to(o.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        kwargs: dict[str, Any] = {"max_length": o.max_length, "num_beams": o.num_beams}
        if o.sample:
            kwargs.update(do_sample=True, top_k=o.top_k, temperature=o.temperature)
        # The global torch generator is forked so that a draw depends on ``rng`` alone.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(rng.getrandbits(63))
            out = model.generate(**enc, **kwargs)  # (1, T_out)
        return tokenizer.decode(out[0], skip_special_tokens=True).strip()
