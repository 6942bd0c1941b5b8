"""``transfer.init_from``: start from the encoder of an earlier polytask run.

The user's own source task becomes the pretrained model (e.g. sentiment on IMDB, then news
topics): the earlier run's encoder architecture, tokenizer and weights are loaded, task heads are
new. The MT-DNN recipe (Liu et al. 2019, "Multi-Task Deep Neural Networks for Natural Language
Understanding") is the same move from a multi-task run to a single-task fine-tune.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from polytask.config.loader import parse_config
from polytask.errors import ConfigError
from polytask.runs import find_checkpoint
from polytask.training import checkpoint as ckpt


@dataclass
class InitReport:
    """What ``init_from`` did, by parameter name (saved as ``init_from.json`` in the run)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in the source, not used (its heads, misfits)
    new: list[str] = field(default_factory=list)  # in the new model, freshly initialised
    mismatched: list[str] = field(default_factory=list)  # same name, other shape

    def summary(self) -> str:
        return (f"init_from {self.source}: {len(self.loaded)} tensors loaded, {len(self.new)} new, "
                f"{len(self.skipped)} of the source skipped ({len(self.mismatched)} for shape)")

    def to_json(self) -> dict:
        return asdict(self)


def source_checkpoint(path: str, encoder_type: str) -> Path:
    """The checkpoint folder of the source run; its encoder type must be this run's."""
    cdir = find_checkpoint(path)
    src_type = parse_config(ckpt.load_meta(cdir)["config"]).encoder.type
    if src_type != encoder_type:
        raise ConfigError(
            f"init_from {path}: that run's encoder is {src_type!r}, this experiment's is {encoder_type!r}; "
            "set encoder.type to match",
            field="transfer.init_from",
        )
    return cdir


def load_matching(model: torch.nn.Module, cdir: Path, source: str) -> InitReport:
    """Copy the source run's weights into ``model`` where name and shape match.

    Raises ConfigError when an encoder tensor has another shape, or nothing fits.
    """
    state = ckpt.load_model_state(cdir)
    own = model.state_dict()
    report = InitReport(source=source)
    to_load = {}
    for name, tensor in state.items():
        if name in own and own[name].shape == tensor.shape and name.startswith("encoder."):
            to_load[name] = tensor
            report.loaded.append(name)
        else:
            report.skipped.append(name)
            if name in own:
                report.mismatched.append(name)
    report.new = [n for n in own if n not in to_load]
    # The encoder is rebuilt from the source's own files, so a same-named tensor of another
    # shape means weights and architecture do not belong together; a partial load would be silent.
    enc_mismatch = [n for n in report.mismatched if n.startswith("encoder.")]
    if enc_mismatch or not to_load:
        shapes = ", ".join(f"{n} {tuple(state[n].shape)} vs {tuple(own[n].shape)}" for n in enc_mismatch[:3])
        raise ConfigError(
            f"init_from {source}: its encoder weights do not fit its encoder architecture "
            f"({len(to_load)} of {len(own)} tensors fit; {shapes or 'no names in common'})",
            field="transfer.init_from",
        )
    model.load_state_dict(to_load, strict=False)
    return report
