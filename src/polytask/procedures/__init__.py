"""Training procedures beyond fine-tuning, each on the step engine (``training/engine.py``):
inter-task affinity (``affinity``); masked-LM pretraining lives in ``polytask.pretrain``."""
