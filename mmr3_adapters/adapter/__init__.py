"""The MM-R³ consistency adapter (paper §5), its training, and the LoRA baseline.

- `config`: AdapterConfig, the sizes and what the adapter was built for (`adapter_config.json`).
- `module`: ConsistencyAdapter, the BiLSTM -> max-pool -> MLP prefix, and where the prefix goes.
- `checkpoint`: save_adapter / load_adapter, with every check a wrong or damaged folder needs.
- `lora`: the LoRA baseline through PEFT, on the same data and loop.
- `losses`: cross-entropy per row, and the optional consistency term.
- `data`: training rows from the train splits, held-out groups, the step plan.
- `train`: the training loop (`mmr3 train-adapter`, `cli`).

docs/adapter.md describes all of it, and which settings are the paper's; docs/paper.md maps the
paper's §5 to it.

Imports: torch, safetensors, accelerate (training), PEFT (LoRA only), `mmr3_adapters.models` and
mmr3_tasks (the train splits, atomic writes, errors); never lmms_eval. `mmr3_adapters.lmms_models`
puts a trained adapter on a wrapper at evaluation.
"""

import importlib

# Loaded on first use (PEP 562): `mmr3 <command>` imports this package to register
# `train-adapter`, and importing torch up front would cost every command about 2 s.
_EXPORTS = {
    "AdapterCheckpointError": "checkpoint",
    "load_adapter": "checkpoint",
    "save_adapter": "checkpoint",
    "AdapterConfig": "config",
    "ConsistencyAdapter": "module",
    "insert_prefix": "module",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
