"""YAML loading, dotted command-line overrides and readable validation errors."""

from __future__ import annotations

import copy
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from polytask.config.schema import ExperimentConfig
from polytask.errors import ConfigError


def read_yaml_mapping(path: Path, what: str, field: str | None = None) -> dict[str, Any]:
    """A YAML file's top-level mapping; ConfigError naming the file when it is missing, is not
    YAML, or is not a mapping. ``what`` names the file in messages ("experiment file")."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}", field=field)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=str(path)) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"the {what} must be a mapping (key: value)", source=str(path))
    return raw


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment file, apply ``key.path=value`` overrides and validate.

    Relative data paths are resolved against the file's folder, so a config works from any
    working directory; ``output_dir`` stays relative to the working directory, like other tools'.

    Args:
        path: the YAML experiment file.
        overrides: dotted overrides such as ``train.lr=3e-5`` or ``tasks.sst2.data.limit=100``
            (a task may be addressed by index or by name).
    """
    path = Path(path)
    raw = apply_overrides(read_yaml_mapping(path, "experiment file"), overrides or [])
    return parse_config(raw, source=str(path), base_dir=path.parent)


def parse_config(
    raw: dict[str, Any], source: str | None = None, base_dir: str | os.PathLike | None = None
) -> ExperimentConfig:
    """Validate a config mapping; resolve relative data paths against ``base_dir``."""
    raw = _keep_strings(raw, ExperimentConfig)
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc), source=source) from None
    _resolve_paths(cfg, Path(base_dir) if base_dir is not None else None)
    return cfg


def resolve_package_path(value: str, field: str | None = None) -> str:
    """``pkg://package/sub/path`` -> the folder of an installed package (data shipped in wheels)."""
    import importlib.util

    package, _, rest = value.removeprefix("pkg://").partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"{value!r} names package {package!r}, which is not installed "
            f"(pip install {package}, or for the demo data: pip install 'polytask[demo]')",
            field=field,
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / rest)


def _resolve_paths(cfg: ExperimentConfig, base: Path | None) -> None:
    """Resolve ``pkg://`` paths, and relative paths against ``base`` when given."""
    for i, task in enumerate(cfg.tasks):
        for split in ("train", "dev", "test"):
            value = getattr(task.data, split)
            if value and value.startswith("pkg://"):
                setattr(task.data, split, resolve_package_path(value, f"tasks.{i}.data.{split}"))
            elif value and base is not None and not os.path.isabs(value):
                setattr(task.data, split, str((base / value).resolve()))
    if base is None:
        return
    if any(t.augment is not None or t.unlabeled is not None for t in cfg.tasks):
        from polytask.augment import resolve_paths  # augment options and unlabeled pools

        resolve_paths(cfg, base)
    init = cfg.transfer.init_from
    if init and not os.path.isabs(init):
        cfg.transfer.init_from = str((base / init).resolve())
    enc = cfg.encoder.name_or_path
    if enc.startswith((".", "/")) or (base / enc).is_dir():
        cfg.encoder.name_or_path = str((base / enc).resolve())
    vectors = cfg.encoder.options.get("vectors")
    # A file path (not a packaged name such as glove-6b-50d) is relative to the experiment file.
    if isinstance(vectors, str) and not os.path.isabs(vectors) and (
        vectors.startswith(".") or "/" in vectors or (base / vectors).exists()
    ):
        cfg.encoder.options = {**cfg.encoder.options, "vectors": str((base / vectors).resolve())}


def dump_config(cfg: ExperimentConfig) -> str:
    """The fully resolved config as YAML (what every run directory keeps)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; the value is parsed as YAML (``3e-5``, ``[a, b]``, ``null``)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value_text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.path=value (e.g. train.lr=3e-5)")
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError:
            value = value_text
        if isinstance(value, bool) and value_text.strip().lower() not in ("true", "false"):
            # YAML 1.1 reads no/yes/on/off as booleans; a string field keeps the text as typed
            # (train.mixed_precision=no), any other field gets the boolean (see _keep_strings).
            value = _BoolText(value_text.strip(), value)
        parts = key.strip().split(".")
        node: Any = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                idx = _list_index(node, part, key)
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"override {key!r}: {'.'.join(parts[:i])!r} is not a mapping")
    return raw


class _BoolText(str):
    """An override value YAML read as a boolean (``no``): the text, and the boolean in ``flag``."""

    flag: bool

    def __new__(cls, text: str, flag: bool) -> _BoolText:
        obj = super().__new__(cls, text)
        obj.flag = flag
        return obj


YAML_BOOL_WORDS = {False: ("no", "false", "off", "n"), True: ("yes", "true", "on", "y")}


def _union_args(ann: Any) -> list[Any]:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(ann) if a is not type(None)]
    return [ann]


def _string_choices(ann: Any) -> list[str] | None:
    """The allowed strings of a string-typed field (``[]``: any string), None when not string-typed."""
    choices: list[str] = []
    for a in _union_args(ann):
        if a is str:
            continue
        if typing.get_origin(a) is Literal and all(isinstance(v, str) for v in typing.get_args(a)):
            choices.extend(typing.get_args(a))
            continue
        return None
    return choices


def _keep_strings(value: Any, ann: Any) -> Any:
    """Undo YAML 1.1's booleans where the schema wants a string: ``mixed_precision: no`` reads as
    False, but the field's values are "no", "fp16", "bf16". Override values typed as ``no``/``yes``
    (``_BoolText``) become the text for string fields and the boolean anywhere else."""
    if isinstance(value, dict):
        model = next((a for a in _union_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return {k: _keep_strings(v, None) for k, v in value.items()}
        out = {}
        for k, v in value.items():
            field = model.model_fields.get(k) if isinstance(k, str) else None
            out[k] = _keep_strings(v, field.annotation if field is not None else None)
        return out
    if isinstance(value, list):
        item = next((typing.get_args(a)[0] for a in _union_args(ann)
                     if typing.get_origin(a) is list and typing.get_args(a)), None)
        return [_keep_strings(v, item) for v in value]
    choices = _string_choices(ann) if ann is not None else None
    if isinstance(value, _BoolText):
        return str(value) if choices is not None else value.flag
    if isinstance(value, bool) and choices:
        spelled = [c for c in YAML_BOOL_WORDS[value] if c in choices]
        return spelled[0] if spelled else value
    return value


def _list_index(items: list[Any], part: str, key: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if -len(items) <= idx < len(items):
            return idx
        raise ConfigError(f"override {key!r}: index {idx} is out of range ({len(items)} items)")
    for idx, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return idx
    names = [str(i.get("name")) for i in items if isinstance(i, dict)]
    raise ConfigError(f"override {key!r}: no item named {part!r}; names: {', '.join(names)}")


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (to list its allowed keys)."""
    model: Any = ExperimentConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = None
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                nxt = c
                break
            for sub in getattr(c, "__args__", ()):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    nxt = sub
        if nxt is None:
            return None
        model = nxt
    return model


def format_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's report into one line per problem, naming the dotted field."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            allowed = ", ".join(owner.model_fields) if owner else "?"
            parent = ".".join(str(p) for p in loc[:-1]) or "the top level"
            lines.append(f"unknown key '{dotted}'; allowed keys under {parent}: {allowed}")
        elif err["type"] == "missing":
            lines.append(f"missing required key '{dotted}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            lines.append(f"'{dotted}': {msg}{got_text}")
    return "invalid experiment config:\n  " + "\n  ".join(lines)
