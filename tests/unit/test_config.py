"""Config: validation, readable errors, dotted overrides, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polytask.config import apply_overrides, dump_config, load_config, parse_config
from polytask.errors import ConfigError
from polytask.pretrain.config import load_pretrain_config

MINIMAL = {
    "name": "t",
    "tasks": [{"name": "sst2", "type": "classification", "data": {"train": "data/train.tsv"}}],
}


def write(tmp_path: Path, obj: dict) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(obj), encoding="utf-8")
    return p


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.encoder.name_or_path == "default"
    assert cfg.train.batch_size == 32 and cfg.train.lr == 5e-5 and cfg.train.max_length == 128
    assert cfg.tasks[0].data.train == str((tmp_path / "data/train.tsv").resolve())


def test_unknown_key_names_key_and_allowed_ones(tmp_path: Path) -> None:
    obj = {**MINIMAL, "train": {"lrr": 1e-4}}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, obj))
    msg = str(err.value)
    assert "exp.yaml" in msg
    assert "unknown key 'train.lrr'; allowed keys under train: epochs, max_steps, batch_size" in msg


def test_unknown_key_inside_a_task(tmp_path: Path) -> None:
    obj = {"tasks": [{"name": "a", "type": "classification", "data": {"train": "x.csv", "colums": {}}}]}
    with pytest.raises(ConfigError, match=r"unknown key 'tasks.0.data.colums'; allowed keys under tasks.0.data: train, dev, test"):
        load_config(write(tmp_path, obj))


def test_missing_tasks_and_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing required key 'tasks'"):
        load_config(write(tmp_path, {"name": "x"}))
    obj = {**MINIMAL, "train": {"batch_size": "big"}}
    with pytest.raises(ConfigError, match=r"'train.batch_size': Input should be a valid integer.*got 'big'"):
        load_config(write(tmp_path, obj))


def test_duplicate_task_name(tmp_path: Path) -> None:
    t = MINIMAL["tasks"][0]
    with pytest.raises(ConfigError, match="task name 'sst2' is used twice"):
        load_config(write(tmp_path, {"tasks": [t, t]}))


def test_data_needs_a_source(tmp_path: Path) -> None:
    obj = {"tasks": [{"name": "a", "type": "classification", "data": {}}]}
    with pytest.raises(ConfigError, match="set data.train"):
        load_config(write(tmp_path, obj))


def test_overrides_by_index_and_name(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), ["train.lr=3e-5", "tasks.sst2.data.limit=10", "tasks.0.max_length=64"])
    assert cfg.train.lr == 3e-5
    assert cfg.tasks[0].data.limit == 10 and cfg.tasks[0].max_length == 64


def test_override_errors(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        load_config(p, ["train.lr"])
    with pytest.raises(ConfigError, match="no item named 'cola'; names: sst2"):
        load_config(p, ["tasks.cola.data.limit=3"])
    with pytest.raises(ConfigError, match="index 5 is out of range"):
        load_config(p, ["tasks.5.name=x"])
    with pytest.raises(ConfigError, match="unknown key 'train.epoch'"):
        load_config(p, ["train.epoch=2"])


def test_apply_overrides_does_not_mutate() -> None:
    raw = {"train": {"lr": 1.0}}
    out = apply_overrides(raw, ["train.lr=2"])
    assert raw["train"]["lr"] == 1.0 and out["train"]["lr"] == 2


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("tasks: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="experiment file not found"):
        load_config(tmp_path / "nope.yaml")


def test_pkg_path_for_a_missing_package() -> None:
    raw = {"tasks": [{"name": "a", "type": "classification", "data": {"train": "pkg://no_such_pkg_xyz/data"}}]}
    with pytest.raises(ConfigError, match="names package 'no_such_pkg_xyz', which is not installed"):
        parse_config(raw)


def test_pkg_path_resolves_to_the_installed_package() -> None:
    raw = {"tasks": [{"name": "a", "type": "classification", "data": {"train": "pkg://yaml/x"}}]}
    cfg = parse_config(raw)
    assert Path(cfg.tasks[0].data.train) == Path(yaml.__file__).parent / "x"


def test_dump_round_trip(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), ["train.epochs=1.5"])
    again = parse_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_every_shipped_example_config_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    configs = sorted(root.glob("examples/*.yaml")) + sorted((root / "src/polytask/examples").glob("*.yaml"))
    assert configs, "no example configs found"
    for p in configs:
        if "tasks" not in yaml.safe_load(p.read_text()):  # a `polytask pretrain` config
            load_pretrain_config(p)
            continue
        load_config(p)  # the demo's data packages come with the dev install (make install)
