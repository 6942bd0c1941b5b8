"""Task samplers: formulas, empirical frequencies, schedules and every user-facing error."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from polytask.errors import ConfigError
from polytask.multitask.samplers import SAMPLERS, TaskSampler, build_sampler

SIZES = {"a": 100, "b": 400}
THREE = {"a": 10, "b": 90, "c": 900}
# Options that make every member's probabilities non-trivial (explicit needs weights).
MEMBER_OPTIONS: dict[str, dict] = {"explicit": {"weights": {"a": 1, "b": 3, "c": 0.5}}}


def build(name: str, sizes: dict[str, int] = THREE, **options) -> TaskSampler:
    return build_sampler(name, sizes, options or MEMBER_OPTIONS.get(name))


def approx(d: dict[str, float]) -> dict[str, object]:
    return {k: pytest.approx(v, abs=1e-12) for k, v in d.items()}


# ---- shared battery over every registered member ----------------------------------------------
@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_every_member_gives_a_distribution_over_the_tasks(name, progress):
    probs = build(name).probabilities(progress)
    assert list(probs) == list(THREE)
    assert all(p >= 0 for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_member_empirical_frequencies_match_probabilities(name):
    sampler = build(name)
    rng = random.Random(0)
    n = 20_000
    counts = Counter(sampler.sample(0.5, rng) for _ in range(n))
    for task, p in sampler.probabilities(0.5).items():
        assert counts[task] / n == pytest.approx(p, abs=0.01), task


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_member_schedule_is_deterministic_and_uses_only_known_tasks(name):
    sampler = build(name)
    first = sampler.schedule(200, random.Random(7))
    assert first == sampler.schedule(200, random.Random(7))
    assert len(first) == 200 and set(first) <= set(THREE)
    assert sampler.schedule(0, random.Random(7)) == []


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_member_rejects_progress_outside_unit_interval(name):
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\]; got 1.5"):
        build(name).probabilities(1.5)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_member_rejects_unknown_option_naming_allowed_keys(name):
    with pytest.raises(ConfigError) as err:
        build_sampler(name, THREE, {"bogus": 1})
    assert err.value.field == "multitask.sampler.options"
    assert "bogus" in str(err.value) and repr(name) in str(err.value)


# ---- formulas ---------------------------------------------------------------------------------
def test_proportional_formula():
    assert build_sampler("proportional", SIZES).probabilities(0.5) == approx({"a": 0.2, "b": 0.8})


def test_temperature_formula_hand_computed():
    # sqrt(100) = 10, sqrt(400) = 20 -> 10/30, 20/30
    probs = build_sampler("temperature", SIZES, {"temperature": 2}).probabilities(0.0)
    assert probs == approx({"a": 1 / 3, "b": 2 / 3})
    # T = 4: 100^0.25 = sqrt(10), 400^0.25 = sqrt(20)
    probs = build_sampler("temperature", SIZES, {"temperature": 4}).probabilities(0.0)
    s10, s20 = 10**0.5, 20**0.5
    assert probs == approx({"a": s10 / (s10 + s20), "b": s20 / (s10 + s20)})


def test_temperature_default_is_two():
    assert build_sampler("temperature", SIZES).probabilities(0.0) == approx(
        {"a": 1 / 3, "b": 2 / 3}
    )


def test_temperature_one_equals_proportional():
    t1 = build_sampler("temperature", THREE, {"temperature": 1.0}).probabilities(0.0)
    assert t1 == approx(build_sampler("proportional", THREE).probabilities(0.0))


def test_temperature_large_approaches_uniform():
    probs = build_sampler("temperature", THREE, {"temperature": 1e6}).probabilities(0.0)
    for p in probs.values():
        assert p == pytest.approx(1 / 3, abs=1e-4)


def test_temperature_does_not_overflow_on_huge_sizes():
    probs = build_sampler("temperature", {"a": 10**300, "b": 10**300}, {"temperature": 0.01})
    assert probs.probabilities(0.0) == approx({"a": 0.5, "b": 0.5})


def test_uniform_formula():
    assert build_sampler("uniform", THREE).probabilities(0.9) == approx({t: 1 / 3 for t in THREE})


def test_explicit_formula_normalises_and_missing_task_gets_zero():
    sampler = build_sampler("explicit", THREE, {"weights": {"a": 1, "c": 3}})
    assert sampler.probabilities(0.0) == approx({"a": 0.25, "b": 0.0, "c": 0.75})
    assert "b" not in sampler.schedule(500, random.Random(1))


def test_annealed_hand_computed_midway():
    # factor 0.5, progress 1 -> alpha 0.5: the temperature-2 numbers
    sampler = build_sampler("annealed", SIZES, {"anneal_factor": 0.5})
    assert sampler.probabilities(1.0) == approx({"a": 1 / 3, "b": 2 / 3})


def test_annealed_starts_proportional_and_ends_uniform_with_factor_one():
    sampler = build_sampler("annealed", THREE, {"anneal_factor": 1.0})
    assert sampler.probabilities(0.0) == approx(
        build_sampler("proportional", THREE).probabilities(0)
    )
    assert sampler.probabilities(1.0) == approx({t: 1 / 3 for t in THREE})


def test_annealed_default_factor_and_monotone_in_progress():
    sampler = build_sampler("annealed", THREE)
    assert sampler.config.anneal_factor == 0.8
    steps = [sampler.probabilities(i / 10) for i in range(11)]
    # the smallest task gains and the largest loses at every step
    for before, after in zip(steps[:-1], steps[1:], strict=True):
        assert after["a"] > before["a"]
        assert after["c"] < before["c"]
    # factor 0.8 ends at alpha 0.2, not quite uniform
    assert steps[-1] == approx(
        {t: n**0.2 / sum(m**0.2 for m in THREE.values()) for t, n in THREE.items()}
    )


# ---- schedules --------------------------------------------------------------------------------
def test_uniform_schedule_is_round_robin():
    sampler = build_sampler("uniform", THREE)
    assert sampler.schedule(7, random.Random(0)) == ["a", "b", "c", "a", "b", "c", "a"]
    # round-robin ignores the rng: every seed gives the same order
    assert sampler.schedule(7, random.Random(99)) == sampler.schedule(7, random.Random(0))


@pytest.mark.parametrize("name", ["proportional", "temperature", "annealed", "explicit"])
def test_schedule_differs_for_another_seed(name):
    sampler = build(name)
    assert sampler.schedule(200, random.Random(1)) != sampler.schedule(200, random.Random(2))


def test_schedule_uses_progress_i_over_n():
    seen: list[float] = []

    class Recording(TaskSampler):
        def probabilities(self, progress):
            seen.append(progress)
            return {"a": 1.0}

    assert Recording({"a": 1}, None).schedule(4, random.Random(0)) == ["a"] * 4
    assert seen == [0.0, 0.25, 0.5, 0.75]


def test_sample_is_reproducible_with_seeded_rng():
    sampler = build("temperature")
    a = [sampler.sample(0.2, random.Random(5)) for _ in range(3)]
    assert len(set(a)) == 1


# ---- errors a user can hit --------------------------------------------------------------------
def test_unknown_sampler_lists_known_ones():
    with pytest.raises(ConfigError) as err:
        build_sampler("round_robin", SIZES)
    assert str(err.value) == (
        "unknown task sampler 'round_robin' (field multitask.sampler.type); "
        "known: annealed, explicit, proportional, temperature, uniform "
        "(or an import path 'package.module:Class')"
    )


def test_sampler_by_import_path():
    sampler = build_sampler("polytask.multitask.samplers.uniform:UniformSampler", SIZES)
    assert sampler.probabilities(0.0) == approx({"a": 0.5, "b": 0.5})


def test_unknown_option_message():
    with pytest.raises(ConfigError) as err:
        build_sampler("temperature", SIZES, {"temp": 3})
    assert str(err.value) == (
        "multitask.sampler.options: unknown option(s) temp for task sampler 'temperature'; "
        "allowed: temperature"
    )


def test_option_for_member_without_options_message():
    with pytest.raises(ConfigError) as err:
        build_sampler("uniform", SIZES, {"temperature": 3})
    assert str(err.value) == (
        "multitask.sampler.options: task sampler 'uniform' takes no options; got temperature"
    )


def test_option_of_wrong_type_message():
    with pytest.raises(ConfigError) as err:
        build_sampler("temperature", SIZES, {"temperature": "hot"})
    assert err.value.field == "multitask.sampler.options.temperature"
    assert str(err.value) == (
        "multitask.sampler.options.temperature: option 'temperature' must be a number; got 'hot'"
    )
    with pytest.raises(ConfigError, match="option 'temperature' must be a number; got True"):
        build_sampler("temperature", SIZES, {"temperature": True})


@pytest.mark.parametrize("bad", [0, -1.5])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ConfigError) as err:
        build_sampler("temperature", SIZES, {"temperature": bad})
    assert str(err.value) == (
        f"multitask.sampler.options: temperature must be > 0; got {float(bad)}"
    )


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_anneal_factor_must_be_in_unit_interval(bad):
    with pytest.raises(ConfigError) as err:
        build_sampler("annealed", SIZES, {"anneal_factor": bad})
    assert str(err.value) == (
        f"multitask.sampler.options: anneal_factor must be in [0, 1]; got {bad}"
    )


def test_explicit_unknown_task_message():
    with pytest.raises(ConfigError) as err:
        build_sampler("explicit", SIZES, {"weights": {"a": 1, "x": 2}})
    assert err.value.field == "multitask.sampler.options.weights"
    assert str(err.value) == (
        "multitask.sampler.options.weights: sampler weight for unknown task 'x'; tasks: a, b"
    )


@pytest.mark.parametrize("weights", [{}, {"a": 0, "b": 0}])
def test_explicit_all_zero_message(weights):
    with pytest.raises(ConfigError) as err:
        build_sampler("explicit", SIZES, {"weights": weights})
    assert str(err.value) == (
        "multitask.sampler.options.weights: sampler weights are all zero; "
        "give at least one task a positive weight (tasks: a, b)"
    )


def test_explicit_negative_weight_message():
    with pytest.raises(ConfigError) as err:
        build_sampler("explicit", SIZES, {"weights": {"a": 1, "b": -2}})
    assert str(err.value) == (
        "multitask.sampler.options: sampler weight for task 'b' must be >= 0; got -2.0"
    )


def test_explicit_weights_of_wrong_type_message():
    with pytest.raises(ConfigError) as err:
        build_sampler("explicit", SIZES, {"weights": {"a": "lots"}})
    assert str(err.value) == (
        "multitask.sampler.options.weights: option 'weights' must map task names to numbers; "
        "got {'a': 'lots'}"
    )


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_empty_task_sizes_message(name):
    with pytest.raises(ConfigError) as err:
        build_sampler(name, {}, MEMBER_OPTIONS.get(name))
    assert str(err.value) == (
        "no tasks to sample from; configure at least one task with training data"
    )


@pytest.mark.parametrize("size", [0, -3])
def test_task_without_data_message(size):
    with pytest.raises(ConfigError) as err:
        build_sampler("proportional", {"a": 10, "x": size})
    assert str(err.value) == f"task 'x' has no training data (size {size})"
