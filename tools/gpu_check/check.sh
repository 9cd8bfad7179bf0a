#!/usr/bin/env bash
# The GPU check (`make gpu-check`): the project's train wrapper against bare open_clip_train on the
# same ~500 px shards (ViT-B/16, bf16, 512 per GPU; median samples/s after the first epoch), then
# the project's evaluation on the GPU. Results in $OUT/result.json (default results/gpu-check),
# rewritten after each stage.
#
# BUDGET (default 480 s: a device call's 600 s less a margin for its start and transfers) is the
# whole check's time, set-up included: what set-up leaves goes to compare.py (--budget), which
# shares it between the project run, the bare run and the evaluation and stops a stage at its share.
# Here, after `make demo`: it reads the demo's newer month. On a lent device machine, which has
# its own Python and torch: run tools/gpu_check/prepare.sh here first, carry .gpu/ (wheels and the
# month's Train train shards and the evaluated benchmarks) and run this script there
# (docs/operations.md: GPU check).
# A smoke run on a CPU: DEVICE=cpu PRECISION=fp32 MODEL=ViT-S-32 BATCH=8 WORKERS=1 EPOCHS=2 SHARDS=4 PER_SHARD=64
set -euo pipefail
cd "$(dirname "$0")/../.."
BUDGET=${BUDGET:-480}
OUT=${OUT:-results/gpu-check}
W=${W:-$(mktemp -d)}
mkdir -p "$OUT"
left() { echo $(( BUDGET - SECONDS )); }   # SECONDS: since this script started
step() {  # result.json until compare.py writes its own: the set-up step reached (where it stopped)
    STEP=$1
    printf '{"budget_s": %s, "setup_s": %s, "done": [], "setup_reached": "%s"}\n' "$BUDGET" "$SECONDS" "$STEP" \
        > "$OUT/result.json"
}
step setup
trap 'step "$STEP"' EXIT   # until compare.py takes over
PYTHON=python3
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python
if [ -d .gpu/whl ]; then   # the device machine: the carried wheels, beside its own torch
    step wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" .gpu/whl/*.whl
    export PYTHONPATH="$W/site:$PWD"
    PYTHON=python3
fi
if [ -f .gpu/snapshot.tgz ]; then
    step unpack
    mkdir -p "$W/snapshot" && tar -xzf .gpu/snapshot.tgz -C "$W/snapshot"
    SNAPSHOT="$W/snapshot"
else
    SNAPSHOT=$(ls -d data/snapshots/*/shards 2>/dev/null | sort | tail -1 | xargs -r dirname)
    [ -n "$SNAPSHOT" ] || { echo "gpu-check: no shards: run make demo first (or carry .gpu/)" >&2; exit 1; }
fi
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then
    step gpu
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" \
        || { echo "gpu-check: no NVIDIA GPU here (DEVICE=cpu for a smoke run)" >&2; exit 1; }
fi
step versions
"$PYTHON" -c "import torch, open_clip, webdataset; print('torch', torch.__version__, 'open_clip', open_clip.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
step make_data   # at most a quarter of what is left: the stages need the rest
LIMIT=$(( $(left) / 4 )); (( LIMIT > 0 )) || LIMIT=1
timeout -k 5 "$LIMIT" "$PYTHON" tools/gpu_check/make_data.py "$SNAPSHOT/shards/train" "$W/data" \
    --shards "${SHARDS:-24}" --per-shard "${PER_SHARD:-1000}"
trap - EXIT
"$PYTHON" tools/gpu_check/compare.py --data "$W/data" --snapshot "$SNAPSHOT" --work "$W" --out "$OUT" \
    --budget "$(left)" --setup-s "$SECONDS" \
    --model "${MODEL:-ViT-B-16}" --precision "${PRECISION:-bf16}" --device "$DEVICE" --batch "${BATCH:-512}" \
    --workers "${WORKERS:-12}" --epochs "${EPOCHS:-3}"
