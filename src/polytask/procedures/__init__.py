"""Training procedures beyond fine-tuning, each on the step engine (``training/engine.py``) or on
``train`` itself: inter-task affinity (``affinity``), self-training rounds (``self_training``);
masked-LM pretraining lives in ``polytask.pretrain``."""
