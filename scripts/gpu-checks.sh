#!/usr/bin/env bash
# The GPU half of issue 15 in one command, for a machine with a CUDA GPU whose python3 already
# holds torch and transformers (nothing is installed; the package runs from src/):
#   1. the tests that only run with CUDA (the vision attention on a fused SDPA kernel, the masked
#      LM's row-skipping backward under bf16 autocast, the EMA, masking and target paths);
#   2. the side-by-side bench in bfloat16 autocast, then in float32 (one fresh worker pair each).
# Logs, the GPU's name and the bench JSON go to $OUT (or ./gpu-checks-out). Each step has its own
# time limit, so a slow step cannot eat the others' time: about 10 minutes in all.
#
#   bash scripts/gpu-checks.sh            # on the device machine, from the repository root
set -o pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-checks-out}
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/machine.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'gpu', torch.cuda.get_device_name(0))" 2>&1 | tee -a "$out/machine.txt"

timeout 180 python3 -m pytest -q -rs -p no:cacheprovider \
    tests/core/test_fast_paths.py tests/core/test_encoder.py tests/text/test_lm_head_backward.py \
    tests/pretraining/test_ema.py tests/pretraining/test_masking.py tests/pretraining/test_targets.py \
    2>&1 | tee "$out/tests.log"

for dtype in bfloat16 float32; do
    timeout 200 python3 -m bench --device cuda --dtype "$dtype" --rounds 10 \
        --json "$out/bench-cuda-$dtype.json" 2>&1 | tee "$out/bench-cuda-$dtype.log"
done
ls -l "$out"
