#!/usr/bin/env bash
# Prepare .gpu/ for the GPU check on a device machine (Python 3.12 with torch; no open_clip,
# webdataset or duckdb): the wheels the project's code needs beyond what it has (~24.7 MB), and
# from the demo's newer month only what the check reads: Train's train shard set (make_data.py's
# source) and the shard sets and subset tables of the benchmarks it evaluates (compare.BENCHMARKS:
# Train's test split, LifeStages): 25.2 MB compressed for the demo's month. git ignores .gpu/;
# carry it (the device's limit is 64 MiB for the working tree and the carried paths together).
set -euo pipefail
cd "$(dirname "$0")/../.."
MONTH=$(ls -d data/snapshots/*/shards | sort | tail -1 | xargs dirname)
mkdir -p .gpu/whl
grep -qx '.gpu/' .git/info/exclude 2>/dev/null || echo '.gpu/' >> .git/info/exclude
pin() { grep -i "^$1==" requirements.lock | head -1; }
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .gpu/whl \
    "$(pin open_clip_torch)" "$(pin webdataset)" \
    "$(pin braceexpand)" "$(pin ftfy)" "$(pin wcwidth)" "$(pin duckdb)" "$(pin jsonschema)" \
    "$(pin jsonschema-specifications)" "$(pin referencing)" "$(pin rpds-py)" "$(pin attrs)" "$(pin tqdm)"
# the month's files the check reads, relative to the month's folder: shard sets as their tars and sizes.json
mapfile -t FILES < <(.venv/bin/python - "$MONTH" <<'PY'
import json, sys
from pathlib import Path
sys.path[:0] = [".", "tools/gpu_check"]
from compare import BENCHMARKS
from workflow_scripts.common import contracts
from workflow_scripts.common.benchmarks import SUBSET_BENCHMARKS

month = Path(sys.argv[1])
sets = [contracts.shard_set(contracts.shards(".", "train"), "train")]  # make_data.py's source
for name in BENCHMARKS:
    sets.append(contracts.shard_set(contracts.shards(".", name), SUBSET_BENCHMARKS[name][0] or contracts.WHOLE))
    print(Path(contracts.subset_table(".", name)))
for folder in sets:
    print(Path(folder) / contracts.SHARD_SIZES)
    for tar in json.loads((month / folder / contracts.SHARD_SIZES).read_text()):
        print(Path(folder) / tar)
PY
)
[ "${#FILES[@]}" -gt 0 ] || { echo "prepare: no files listed for the snapshot" >&2; exit 1; }
tar -czf .gpu/snapshot.tgz -C "$MONTH" "${FILES[@]}"
du -b .gpu/snapshot.tgz .gpu/whl | awk '{printf "%-20s %.1f MB\n", $2, $1 / 1e6}'
du -sh .gpu
