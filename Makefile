# Two commands for a newcomer: `make demo` and `make test` (both install into .venv first).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.8
# Rules call `python -m workflow_scripts...` and DVC stages call `snakemake`: use the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help install demo check test test-slurm bench gpu-check generate lock store-gc clean

help:
	@echo "make demo     install if needed, then run the pipeline on the generated sample (dvc repro)"
	@echo "make check    install if needed, then the fast tests (a few minutes: not the photo sample, training or the pipeline)"
	@echo "make test     install if needed, then the whole test suite but SLURM (two workers)"
	@echo "make test-slurm  bring up a single-node SLURM cluster here (root, Debian), then the whole suite with the pipeline run through it (what CI runs)"
	@echo "make bench    benchmarks (curation vs pandas, subsets at 10 M rows, sharding vs a byte copy, image jobs 1 vs 2, near-duplicate hashing and search, the training loader, evaluation memory, the sample's scaling; ~26 minutes)"
	@echo "make gpu-check  on a machine with an NVIDIA GPU, after make demo: the train wrapper vs bare open_clip_train, then evaluation on CUDA"
	@echo "make generate write dvc.yaml, envs/*.yaml and docs/configuration.md from the rules and the schema (after changing rules, code or config.yaml)"
	@echo "make install  create .venv with the pinned dependencies (idempotent)"
	@echo "make lock     re-pin requirements.lock after editing pyproject.toml"
	@echo "make store-gc remove the image store's packs that no kept snapshot uses (docs/images.md)"
	@echo "make clean    remove generated data, models, results and logs"

install: $(STAMP)

# Re-runs only when the pins change; otherwise `make install` returns at once. uv installs the same
# pins as pip in a seventh of the time (docs/measurements.md: the install); pip installs uv itself.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(PYTHON) -c requirements.lock -e '.[dev]'
	touch $@

demo: install
	dvc repro
	dvc status
	# every table and figure, with provenance (it records run times: not versioned). Snakemake ignores
	# SIGTERM while jobs run, so every scripted call is bounded and then killed.
	timeout -k 60 30m snakemake --report results/report.html
	@echo "The sample:        data/sample/ (bucket/: the generated bucket; the LifeStages web export; planted.json)."
	@echo "Fetched snapshots: data/snapshots/*/raw/ (manifest.json in each)."
	@echo "Curated tables:    data/snapshots/*/curated/curated.parquet (curation_report.json: every dropped row)."
	@echo "Statistics:        data/snapshots/*/stats/ (Figures 2 and 3, long tail, Tables 2/6 column)."
	@echo "Subsets:           data/snapshots/*/subsets/ (checked: overlap_report.json), results/*/subset_tables/ (Tables 3, 7)."
	@echo "Genus-sampled:     data/snapshots/*/subsets/genus_sampled.parquet, results/*/genus_sampled/ (its long tail beside the curated table's)."
	@echo "Images, shards:    data/snapshots/*/images/ (download reports, failure ledgers, duplicate images), data/snapshots/*/shards/<subset>/ (shuffle_quality.png: Figure 5c)."
	@echo "Image store:       data/store/ (packs/: every downloaded image; index/<date>.parquet and .report.json: what each snapshot reused and downloaded)."
	@echo "Models:            models/*/tiny-cpu/ (checkpoint.pt, argv.json, metrics.json, train.log)."
	@echo "Evaluation:        results/*/eval/<model>/ (predictions Parquet per benchmark, metrics.json)."
	@echo "Paper tables:      results/*/paper_tables/ (Tables 5, 8, 9, conformal_sets as .csv, .md, .tex; figures; metrics.json for dvc metrics show)."
	@echo "Long-tail accuracy: results/*/shot_bands/ (top-1 per band of train-split images per class: .csv, .md, .tex, .png)."
	@echo "Data cards:        results/*/data_card/data_card.md (composition, licenses, biases, attribution, citation; figures)."
	@echo "Exports:           data/snapshots/*/exports/ (clip_benchmark/<benchmark>/, inat2021/<subset>/; docs/exports.md)."
	@echo "Monthly diff:      results/diff/<A>_vs_<B>/report.md (data, split stability, benchmarks, results; JSON, Parquet, plots)."
	@echo "Provenance:        <output>.provenance.json beside every output folder (settings, code, inputs, tool versions)."
	@echo "Report:            results/report.html (every table, figure and provenance; open it in a browser)."

# The inner loop: what runs in seconds to a minute each (pyproject.toml lists the markers).
check: install
	$(PYTHON) -m pytest -m "not slow and not slurm" -n 2

# The whole suite on two workers, a test file each at a time (--dist loadfile), so that a module's
# fixtures (the DVC test's builds) are made once; session fixtures shared by files (the sample's
# photos, the demo model) are built once per run (tests/conftest.py: once_per_run). The 25 slowest
# steps are listed at the end: where a slower machine's time went.
test: install
	$(PYTHON) -m pytest -m "not slurm" -n 2 --dist loadfile --durations=25

# Installs and starts slurmctld, slurmd and munge (apt-get, as root) unless a cluster is up, then
# runs the whole suite and the SLURM test in one run: the sample through training and evaluation as
# SLURM jobs, compared with the small project test_dvc builds; the rest of the suite runs while the
# SLURM jobs wait on the cluster (tests/conftest.py puts the SLURM test first).
test-slurm: install
	bash profiles/slurm/single_node.sh
	$(PYTHON) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25

bench: install
	$(PYTHON) bench/curate.py
	$(PYTHON) bench/subsets.py
	$(PYTHON) bench/shards.py
	$(PYTHON) bench/images.py
	$(PYTHON) bench/near_dup.py
	$(PYTHON) bench/loader.py
	$(PYTHON) bench/eval_memory.py
	$(PYTHON) bench/sample.py

# Results in results/gpu-check/result.json (docs/operations.md: GPU check).
gpu-check: install
	bash tools/gpu_check/check.sh

# dvc.yaml (the DVC stages) and envs/*.yaml (the conda environments) are derived from the rules and
# the code they run; a test fails when the committed ones differ from what this writes.
generate: install
	$(PYTHON) -m tools.generate

lock:
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e '.[dev]'
	{ echo "# Transitive closure of pyproject.toml's pins, from 'pip freeze' in a fresh venv (Python 3.11)."; \
	  echo "# Regenerate with 'make lock' after changing a pin."; \
	  .venv-lock/bin/pip freeze --exclude-editable; } > requirements.lock
	rm -rf .venv-lock

# Not a rule: no snapshot's outputs depend on it, and it must not run while a download does.
store-gc: install
	$(PYTHON) -m workflow_scripts.images.store_gc --store data/store

clean:
	rm -rf data models results logs .snakemake
