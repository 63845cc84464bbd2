"""Task YAMLs; a package so that lmms-eval's LMMS_EVAL_PLUGINS=mmr3_tasks finds `mmr3_tasks.tasks`."""
