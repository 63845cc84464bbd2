#!/usr/bin/env bash
# The GPU figures of benchmarks/README.md in one run, on a bare GPU machine that has torch and
# transformers but not lmms-eval (and no network): full-size LLaVA-1.5-7B and BLIP-2 OPT-2.7b with
# random weights at batch 1, 8 and 32; the consistency adapter on full-size LLaVA-1.5-7B and BLIP-2
# Flan-T5-XXL (training memory and speed, added latency per answer); then style transfer on CPU and GPU.
#
#   bash benchmarks/gpu_check.sh [STYLE_MODELS_DIR]      (default .gpu-carry/style-models)
#
# Writes env.txt, smoke.log, models.log, models.json, adapter.log, adapter.json and styles.log under
# $OUT (default ./gpu-out). It checks the code paths with tiny dims first (seconds), so a broken
# environment fails before a 7B model is built. Each step has its own time limit (90 + 180 + 180 +
# 60 s: under a 540 s call), and the JSON files are rewritten after every measured line. Run from the
# repository root; nothing needs installing.
set -u -o pipefail
out=${OUT:-gpu-out}
style_models=${1:-.gpu-carry/style-models}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$py" -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"
    nproc
} 2>&1 | tee "$out/env.txt"

if ! timeout 90 bash -c "'$py' benchmarks/models_throughput.py --smoke && '$py' benchmarks/adapter_train.py --smoke" \
    >"$out/smoke.log" 2>&1; then
    cat "$out/smoke.log"
    echo "gpu_check: the tiny-dims smoke run failed; nothing measured" >&2
    exit 1
fi
echo "smoke run: ok"

status=0
timeout 180 "$py" benchmarks/models_throughput.py --gpu-only --json "$out/models.json" 2>&1 | tee "$out/models.log" || status=1
timeout 180 "$py" benchmarks/adapter_train.py --gpu-only --steps 8 --json "$out/adapter.json" 2>&1 | tee "$out/adapter.log" || status=1
timeout 60 "$py" benchmarks/build_styles.py --device auto --style-models "$style_models" 2>&1 | tee "$out/styles.log" || status=1
exit $status
