"""MM-R³ models for lmms-eval: batched BLIP-2 and LLaVA-1.5, a replay model, the consistency adapter.

What lives here:

- `models/`: the batched BLIP-2 and LLaVA-1.5 wrappers on transformers, their prompt formats and
  generation settings, tiny random checkpoints for tests (docs/models.md);
- `adapter/`: the paper's consistency adapter, its training (`mmr3 train-adapter`) and the LoRA
  baseline (docs/adapter.md);
- `lmms_models`: the lmms-eval side, `mmr3_llava`, `mmr3_blip2` and `mmr3_replay`, registered
  through the `lmms_eval.models` entry point (docs/registration.md);
- `replay_file`: the strict reader of `mmr3_replay`'s responses files (docs/models.md);
- `demo_command`: `mmr3 demo`, the whole pipeline on the bundled demo set.

Imports: mmr3_adapters may import mmr3_tasks (data, schema, errors, report), never the reverse.
Only `lmms_models` imports lmms_eval; `models/` and `adapter/` work and test without it (`demo`
runs the `lmms-eval` command as a subprocess). tests/test_imports.py checks both.
"""

__version__ = "0.1.0"
