"""For lmms-eval's legacy LMMS_EVAL_PLUGINS=mmr3_tasks, which imports `<plugin>.models`.

Our models register through the `lmms_eval.models` entry point (mmr3_adapters); none here.
"""

AVAILABLE_MODELS: dict[str, str] = {}
