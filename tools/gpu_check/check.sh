#!/usr/bin/env bash
# The GPU check (`make gpu-check`): the project's train wrapper against bare open_clip_train on the
# same ~500 px shards (ViT-B/16, bf16, 512 per GPU; median samples/s after the first epoch), then
# the project's evaluation on the GPU. Results in $OUT/result.json (default results/gpu-check).
#
# Here, after `make demo`: it reads the demo's newer month. On a lent device machine, which has
# its own Python and torch: run tools/gpu_check/prepare.sh here first, carry .gpu/ (wheels and the
# month's shards and subsets) and run this script there (README: Training, GPU check).
# A smoke run on a CPU: DEVICE=cpu PRECISION=fp32 MODEL=ViT-S-32 BATCH=8 WORKERS=1 EPOCHS=2 SHARDS=4 PER_SHARD=64
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-results/gpu-check}
W=${W:-$(mktemp -d)}
mkdir -p "$OUT"
PYTHON=python3
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python
if [ -d .gpu/whl ]; then   # the device machine: the carried wheels, beside its own torch
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" .gpu/whl/*.whl
    export PYTHONPATH="$W/site:$PWD"
    PYTHON=python3
fi
if [ -f .gpu/snapshot.tgz ]; then
    mkdir -p "$W/snapshot" && tar -xzf .gpu/snapshot.tgz -C "$W/snapshot"
    SNAPSHOT="$W/snapshot"
else
    SNAPSHOT=$(ls -d data/snapshots/*/shards 2>/dev/null | sort | tail -1 | xargs -r dirname)
    [ -n "$SNAPSHOT" ] || { echo "gpu-check: no shards: run make demo first (or carry .gpu/)" >&2; exit 1; }
fi
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" \
        || { echo "gpu-check: no NVIDIA GPU here (DEVICE=cpu for a smoke run)" >&2; exit 1; }
fi
"$PYTHON" -c "import torch, open_clip, webdataset; print('torch', torch.__version__, 'open_clip', open_clip.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
"$PYTHON" tools/gpu_check/make_data.py "$SNAPSHOT/shards/train" "$W/data" --shards "${SHARDS:-24}" --per-shard "${PER_SHARD:-1000}"
"$PYTHON" tools/gpu_check/compare.py --data "$W/data" --snapshot "$SNAPSHOT" --work "$W" --out "$OUT" \
    --model "${MODEL:-ViT-B-16}" --precision "${PRECISION:-bf16}" --device "$DEVICE" --batch "${BATCH:-512}" \
    --workers "${WORKERS:-12}" --epochs "${EPOCHS:-3}"
