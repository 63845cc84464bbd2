"""MM-R³ for lmms-eval: tasks, metrics, dataset builder, reports and the `mmr3` CLI."""

__version__ = "0.1.0"
