#!/usr/bin/env bash
# Prepare .gpu/ for the GPU check on a device machine (Python 3.12 with torch; no open_clip,
# webdataset or duckdb): the wheels the project's code needs beyond what it has, and the demo's
# newer month (its shards and subsets, ~35 MB compressed). git ignores .gpu/; carry it.
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
tar -czf .gpu/snapshot.tgz -C "$MONTH" shards subsets
du -sh .gpu
