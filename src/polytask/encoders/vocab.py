"""Word and character vocabularies as Hugging Face fast tokenizers.

The word encoders (``bilstm``, ``cnn``) use a ``tokenizers`` WordLevel model wrapped in
``transformers.PreTrainedTokenizerFast``, so the tasks call it exactly as they call a
transformer's tokenizer (pairs, truncation, ``is_split_into_words`` with ``word_ids()``), and it
saves and reloads with ``save_pretrained`` / ``from_pretrained``.

Splitting: ``vocab: word`` cuts at whitespace and around every punctuation character, and puts
each CJK character apart (BERT's basic tokenisation, Devlin et al. 2019, without word pieces);
``vocab: char`` makes every non-space character a token (for Chinese, Japanese and other text
written without spaces, or character-level models). Sequences are ``[CLS] a [SEP]`` and
``[CLS] a [SEP] b [SEP]`` with token type 1 on ``b``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIALS = [PAD, UNK, CLS, SEP]  # ids 0, 1, 2, 3


def _components(mode: str, lowercase: bool) -> tuple[Any, Any]:
    from tokenizers import Regex, normalizers, pre_tokenizers

    if mode not in ("word", "char"):
        raise ValueError(f"vocab must be 'word' or 'char', got {mode!r}")
    # clean_text drops control characters; handle_chinese_chars spaces out CJK characters.
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=lowercase
    )
    if mode == "word":
        pre = pre_tokenizers.BertPreTokenizer()
    else:
        pre = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
        )
    return normalizer, pre


def split_tokens(texts: Iterable[str | list[str]], mode: str, lowercase: bool) -> Iterable[str]:
    """The tokens the tokenizer will see, for counting. A list is a pre-split text (its words)."""
    normalizer, pre = _components(mode, lowercase)
    for text in texts:
        pieces = text if isinstance(text, (list, tuple)) else [text]
        for piece in pieces:
            if not isinstance(piece, str):
                raise TypeError(f"vocabulary texts must be strings or lists of words, got {type(piece).__name__}")
            for token, _span in pre.pre_tokenize_str(normalizer.normalize_str(piece)):
                yield token


def build_vocab(
    counts: Counter[str],
    min_freq: int = 1,
    max_size: int | None = None,
    extra: Iterable[str] = (),
) -> dict[str, int]:
    """Token -> id: the special tokens, then counted tokens by falling frequency, then ``extra``.

    Args:
        counts: token counts from the training texts.
        min_freq: tokens seen fewer times are left out (they become ``[UNK]``).
        max_size: the most tokens, special tokens not counted (None: no limit).
        extra: more tokens appended in order while there is room (e.g. a vectors file's words).
    """
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    limit = None if max_size is None else max_size + len(SPECIALS)
    # Ties broken alphabetically so the same texts always give the same ids.
    for tok, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if n < min_freq or (limit is not None and len(vocab) >= limit):
            break
        vocab.setdefault(tok, len(vocab))
    for tok in extra:
        if limit is not None and len(vocab) >= limit:
            break
        vocab.setdefault(tok, len(vocab))
    return vocab


def make_tokenizer(vocab: dict[str, int], mode: str = "word", lowercase: bool = True) -> Any:
    """A ``PreTrainedTokenizerFast`` over ``vocab`` (which must hold the special tokens)."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    missing = [s for s in SPECIALS if s not in vocab]
    if missing:
        raise ValueError(f"the vocabulary lacks the special tokens {missing}")
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer, tok.pre_tokenizer = _components(mode, lowercase)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK, pad_token=PAD, cls_token=CLS, sep_token=SEP,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def load_tokenizer(directory: Any) -> Any:
    """Reload a tokenizer written by ``save_pretrained``."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(directory))
