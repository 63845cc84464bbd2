#!/usr/bin/env bash
# The GPU figures of benchmarks/README.md in one run, on a bare GPU machine that has torch and
# transformers but not lmms-eval (and no network): full-size LLaVA-1.5-7B and BLIP-2 OPT-2.7b with
# random weights at batch 1, 8 and 32, then style transfer on CPU and GPU.
#
#   bash benchmarks/gpu_check.sh [STYLE_MODELS_DIR]      (default .gpu-carry/style-models)
#
# Writes env.txt, smoke.log, models.log, models.json and styles.log under $OUT (default ./gpu-out).
# It checks the code path with tiny dims first (seconds), so a broken environment fails before the
# 7B model is built. Each step has its own time limit (60 + 210 + 90 s: under a 400 s call), and
# models.json is rewritten after every measured line. Run from the repository root; nothing needs
# installing.
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

if ! timeout 60 "$py" benchmarks/models_throughput.py --smoke >"$out/smoke.log" 2>&1; then
    cat "$out/smoke.log"
    echo "gpu_check: the tiny-dims smoke run failed; nothing measured" >&2
    exit 1
fi
echo "smoke run: ok"

status=0
timeout 210 "$py" benchmarks/models_throughput.py --gpu-only --json "$out/models.json" 2>&1 | tee "$out/models.log" || status=1
timeout 90 "$py" benchmarks/build_styles.py --device auto --style-models "$style_models" 2>&1 | tee "$out/styles.log" || status=1
exit $status
