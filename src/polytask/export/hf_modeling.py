"""The sequence-classification model class written next to an exported polytask task.

Why a model file at all: polytask pools a sequence by the mean of its token states (the default,
as sentence-transformers does) or by its first token, then applies one linear layer. The
transformers ``*ForSequenceClassification`` classes of BERT-style encoders pool differently
(``tanh(dense([CLS]))`` for BERT, a dense + tanh head for RoBERTa): no setting of theirs computes
a mean, so a standard class cannot give polytask's probabilities. The file below is the smallest
class that does -- the encoder's own transformers base class, the same pooling, the same linear
head -- and loads through ``AutoModelForSequenceClassification`` / ``pipeline`` with
``trust_remote_code=True`` (``auto_map`` in ``config.json``). Token tasks need no such file:
``AutoModelForTokenClassification`` is exactly dropout + linear over token states.
"""

from __future__ import annotations

MODEL_FILE = "modeling_polytask.py"
CLASS_NAME = "PolytaskForSequenceClassification"

TEMPLATE = '''"""Written by `polytask export hf`: {base_cls} + polytask pooling ("mean" or "cls") + one linear layer.

Load with transformers' AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
or pipeline("text-classification", model=folder, trust_remote_code=True). The pooling is in
config.polytask_pooling; the loss follows config.problem_type, so the model can be fine-tuned further.
"""

import torch
from torch import nn
from transformers import {base_cls}, {config_cls}, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class {class_name}(PreTrainedModel):
    config_class = {config_cls}
    base_model_prefix = "{prefix}"

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.{prefix} = {base_cls}(config{base_kwargs})
        self.dropout = nn.Dropout(getattr(config, "polytask_dropout", 0.1))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {{"input_ids": input_ids, "attention_mask": attention_mask}}
        if token_type_ids is not None and getattr(self.config, "type_vocab_size", 0) > 1:
            inputs["token_type_ids"] = token_type_ids
        states = self.{prefix}(**inputs).last_hidden_state  # (B, T, H)
        if getattr(self.config, "polytask_pooling", "mean") == "cls":
            pooled = states[:, 0]
        else:  # the mean of the real (unpadded) tokens
            m = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
            pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        loss = None
        if labels is not None:
            kind = self.config.problem_type
            if kind == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            elif kind == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
'''


def render(base_cls: str, config_cls: str, prefix: str, pooling_layer_arg: bool) -> str:
    """The model file's source for an encoder of class ``base_cls`` (e.g. ``BertModel``).

    Args:
        base_cls: the transformers base model class name.
        config_cls: its config class name (``BertConfig``).
        prefix: its ``base_model_prefix`` (``bert``), so weights are named as in every
            transformers checkpoint of that family and ``AutoModel`` loads the encoder alone.
        pooling_layer_arg: whether the base class takes ``add_pooling_layer`` (it is left out:
            polytask never uses the pooler).
    """
    return TEMPLATE.format(
        base_cls=base_cls, config_cls=config_cls, prefix=prefix, class_name=CLASS_NAME,
        base_kwargs=", add_pooling_layer=False" if pooling_layer_arg else "",
    )
