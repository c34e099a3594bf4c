#!/usr/bin/env bash
# Train the world CLIP on a lent GPU (device tool). Runs from the repo root there;
# wheels for packages that image lacks travel in .whl/ (see .library/device/README.md).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L
OUTDIR=${OUT:-/tmp/out}/world
mkdir -p "$OUTDIR"
python3 -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip', open_clip.__version__)"
python3 -m unclip_probe.cli train clip --out "$OUTDIR" --steps "${STEPS:-6000}" --batch-size "${BATCH:-512}" \
  --lr "${LR:-7e-4}" --workers 15 --device cuda --quiet --checkpoint-every 1000 \
  --budget-minutes "${BUDGET:-5}" ${EXTRA:-} 2>&1 | tail -40
rm -f "$OUTDIR"/*.prev.*
ls -la "$OUTDIR"
