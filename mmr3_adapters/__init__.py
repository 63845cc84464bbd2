"""MM-R³ models for lmms-eval: batched BLIP-2 and LLaVA-1.5, a replay model, the consistency adapter."""

__version__ = "0.1.0"
