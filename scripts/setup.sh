#!/usr/bin/env bash
# Create .venv and install data2vec into it.
#   bash scripts/setup.sh          # the library and its command
#   bash scripts/setup.sh --dev    # plus the test tools (pytest, transformers as the test oracle)
#   bash scripts/setup.sh --tf     # plus the TensorFlow extra (TFData2VecVision* classes)
#   bash scripts/setup.sh --demo   # plus scikit-learn, whose digits the image demo uses
#   bash scripts/setup.sh --plot   # plus matplotlib, which draws loss.png / curves.png of a run
# torch is pinned first to the CPU build 2.13.0: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=()
for arg in "$@"; do
  case "$arg" in
    --dev) extras+=(dev) ;;
    --tf) extras+=(tf) ;;
    --demo) extras+=(demo) ;;
    --plot) extras+=(plot) ;;
    *) echo "unknown option $arg (use --dev, --tf, --demo, --plot)" >&2; exit 2 ;;
  esac
done
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
.venv/bin/python -m pip install --quiet -e "$spec"
echo "data2vec installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
