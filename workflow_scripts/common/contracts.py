"""Where each stage puts what it writes: the one definition of the pipeline's folders and file
names, used by the rules (rules/common.smk) and by the stages that read another stage's output.

Paths are built from a root or a snapshot folder, which may hold Snakemake wildcards
("data/snapshots/{date}"). Every output folder or file has its provenance beside it
(`provenance()`), outside what later stages read, so a change of code alone reruns nothing
downstream.
"""

from __future__ import annotations

from pathlib import PurePosixPath

GENUS_SAMPLED = "genus_sampled"  # the long-tail subset drawn by genus (subsets.genus_sampled)
SUBSETS = ("train", "balanced", "unseen", "lifestages", GENUS_SAMPLED)
SPLIT_SUBSETS = ("train", GENUS_SAMPLED)  # those with a `split` column (TRAIN_SPLITS)


def provenance(output: str) -> str:
    """The provenance file beside an output folder or file: curated/ -> curated.provenance.json."""
    stem = output.rstrip("/")
    return (stem.rsplit(".", 1)[0] if "." in stem.rsplit("/", 1)[-1] else stem) + ".provenance.json"


def provenance_target(provenance_file: str) -> str:
    """The output folder a provenance file sits beside: curated.provenance.json -> curated."""
    return provenance_file.removesuffix(".provenance.json")


def subsets_by_name(tables: list) -> dict[str, str]:
    """{subset: its table} for the subsets' tables, each named <subset>.parquet: all of them,
    once."""
    found = by_subset(tables)
    if sorted(found) != sorted(SUBSETS):
        raise ValueError(
            f"expected the tables of {', '.join(SUBSETS)}, got {', '.join(map(str, tables))}"
        )
    return {subset: found[subset] for subset in SUBSETS}


def subset_of(path) -> str:
    """The subset a table (<subset>.parquet, subset_table()) or a shards folder (shards/<subset>,
    shards()) belongs to: its name."""
    return str(path).rstrip("/").rsplit("/", 1)[-1].removesuffix(subset_file(""))


def by_subset(paths: list, what: str = "tables") -> dict[str, str]:
    """{subset: path} for some subsets' tables or shards folders (`what`: "tables" or "shards"), in
    the order given: each subset once (a path given twice counts once)."""
    found: dict[str, str] = {}
    for path in dict.fromkeys(map(str, paths)):
        subset = subset_of(path)
        if subset not in SUBSETS or (what == "tables") != path.endswith(subset_file("")):
            kind = (
                "table (<subset>.parquet)"
                if what == "tables"
                else "shards folder (shards/<subset>)"
            )
            raise ValueError(f"{path}: not a subset's {kind}; the subsets: {', '.join(SUBSETS)}")
        if subset in found:
            raise ValueError(f"two {what} of {subset}: {found[subset]} and {path}")
        found[subset] = path
    return found


def subset_inputs(shards: list, tables: list) -> dict[str, tuple[str, str]]:
    """{subset: (its shards folder, its table)} from subsets' shards folders and tables given in any
    order: each subset's both, once."""
    folders, named = by_subset(shards, "shards"), by_subset(tables, "tables")
    if sorted(folders) != sorted(named):
        raise ValueError(
            f"shards of {', '.join(folders) or 'no subset'} but tables of "
            f"{', '.join(named) or 'no subset'}: each subset needs both"
        )
    return {subset: (folders[subset], named[subset]) for subset in named}


# -- sample (rules/sample.smk): the embedded default, a generated bucket and web export ------------
def sample(data: str) -> str:
    return f"{data}/sample"


SAMPLE_BUCKET = "bucket"  # the bucket's layout: tables, monthly bundles, taxonomy archive, photos
# the bucket's photos/<id>/<size>.<ext>, packed in one tar under those names (DVC tracks one file,
# not one per photo); served at the same URLs (workflow_scripts.images.photo_server)
SAMPLE_PHOTOS = "photos.tar"


def sample_photos_as_of(date: str) -> str:
    """The sample's photos as an earlier snapshot served them, where they differ from photos.tar
    (a photo rotated or replaced since): the photo server serves these first for that date."""
    return f"photos-{date}.tar"


def is_sample_photos(name: str) -> bool:
    """Whether a file of the sample's bucket is one of its photo packs (not a bucket object)."""
    return name == SAMPLE_PHOTOS or (name.startswith("photos-") and name.endswith(".tar"))


SAMPLE_LIFESTAGES = (
    "observations-lifestages.csv"  # an iNaturalist web export with a Life Stage column
)
SAMPLE_PLANTED = "planted.json"  # what the generator planted, for tests


# -- fetch: one monthly snapshot -------------------------------------------------------------------
def snapshot(data: str, date: str = "{date}") -> str:
    return f"{data}/snapshots/{date}"


def raw(snapshot_dir: str) -> str:
    """photos/observations/taxa/observers .csv.gz, the taxonomy archive and manifest.json."""
    return f"{snapshot_dir}/raw"


LATEST = "latest.json"  # under <data>/snapshots/: the date `latest` resolved to
MANIFEST = "manifest.json"
TAXONOMY_ARCHIVE = "inaturalist-taxonomy.dwca.zip"


# -- curate ----------------------------------------------------------------------------------------
def curated(snapshot_dir: str) -> str:
    return f"{snapshot_dir}/curated"


CURATED_TABLE = "curated.parquet"
CURATION_REPORT = "curation_report.json"
REJECTS = "rejects.csv"


# -- stats: a folder of tables and figures ---------------------------------------------------------
def stats(snapshot_dir: str) -> str:
    return f"{snapshot_dir}/stats"


# -- subsets, their overlap check and Tables 3 and 7 -----------------------------------------------
def subsets(snapshot_dir: str) -> str:
    return f"{snapshot_dir}/subsets"


def subset_file(subset: str) -> str:
    return f"{subset}.parquet"


def subset_table(snapshot_dir: str, subset: str) -> str:
    return f"{subsets(snapshot_dir)}/{subset_file(subset)}"


SPECIES_TABLE = "species.parquet"  # each species' size and what the thresholds made of it
SUBSETS_REPORT = "subsets_report.json"


def overlap_report(snapshot_dir: str) -> str:
    return f"{snapshot_dir}/overlap_report.json"


def subset_tables(results: str, date: str = "{date}") -> str:
    return f"{results}/{date}/subset_tables"


SUBSET_TABLES = ("table3_train_unique_taxa", "table7_balanced_species")


def subset_figure(subset: str) -> str:
    return f"subset_distribution_{subset}.png"


def long_tail(results: str, date: str = "{date}") -> str:
    """genus_sampled's long tail beside the curated table's: LONG_TAIL .csv/.md/.tex and .png."""
    return f"{results}/{date}/genus_sampled"


LONG_TAIL = "genus_sampled_long_tail"


# -- images: downloads in chunks, duplicate images, shards in parts --------------------------------
def images(snapshot_dir: str, subset: str = "{subset}") -> str:
    """One subset's images: the chunks' downloads (temporary), the download report, the failure
    ledger, and the shard order and parts (temporary)."""
    return f"{snapshot_dir}/images/{subset}"


DOWNLOAD_REPORT = "download_report.json"
FAILURES = (
    "failures.parquet"  # the ledger: photo_id, url, reason, attempts of each image not downloaded
)
CHUNK_URLS = "urls.parquet"  # one chunk's URL list (photo_id, url), in its folder
CHUNK_REPORT = "report.json"  # one chunk's downloads, in its folder
# one chunk's images: each one's key, sha256, hashes and place in the image store (images/store.py)
CHUNK_IMAGES = "images.parquet"
# perceptual hashes (photo_id, hash, mirrored, quality): a chunk's, then its subset's
HASHES = "hashes.parquet"


def external_hashes(snapshot_dir: str, name: str = "{name}") -> str:
    """The perceptual hashes of an external benchmark's images (config evaluate.external), keyed by
    its metadata key, for one snapshot's check (a few minutes each: no output shared by
    snapshots)."""
    return f"{snapshot_dir}/images/external/{name}.{HASHES}"


def jobs(rows: int, per_job: int) -> int:
    """Jobs of `per_job` rows each for `rows` rows; an empty subset has one, empty."""
    return max(1, -(-rows // per_job))


def url_chunks(rows: int, images: dict) -> int:
    """How many download jobs a subset of `rows` rows gets (`images`: config.yaml's section), each
    `urls_per_job` consecutive rows in photo_id order."""
    return jobs(rows, images["urls_per_job"])


def chunk_name(number: int) -> str:
    return f"{number:05d}"


def chunk_folder(images_dir: str, chunk: str = "{chunk}") -> str:
    """img2dataset's passes over one chunk (pass-0 and the retries), its URL list and report."""
    return f"{images_dir}/chunks/{chunk}"


def image_store(data: str) -> str:
    """Images downloaded for any snapshot, kept for the next (images/store.py): packs/ and index/.
    Not an output of any one snapshot: later indexes point into earlier months' packs."""
    return f"{data}/store"


def store_index(store: str, date: str = "{date}") -> str:
    """Every image the store keeps after a snapshot, where its bytes are (images/store.py)."""
    return f"{store}/index/{date}.parquet"


def store_of_index(index: str) -> str:
    """The image store whose index this is (store_index's inverse)."""
    return str(PurePosixPath(index).parent.parent)


def is_store_index(path: str) -> bool:
    """Whether `path` is an image store's index (store_index): the previous snapshot's is read by
    the next one's downloads, but as a cache (a snapshot's outputs are the same bytes with it or
    without it), so it makes no DVC dependency between months."""
    folder = PurePosixPath(path).parent
    return folder.name == "index" and folder.parent.name == "store" and path.endswith(".parquet")


def store_report(store: str, date: str = "{date}") -> str:
    """What a snapshot did to the store: reused, downloaded, re-downloaded; its size before and
    after."""
    return f"{store}/index/{date}.report.json"


def shard_order(images_dir: str) -> str:
    """The subset's shards' order: photo_id and where its image is, position by position."""
    return f"{images_dir}/shard_order.parquet"


def shard_part(images_dir: str, shard_set: str = "{shard_set}", part: str = "{part}") -> str:
    """shards.shards_per_job consecutive shards of one shard set, before they join the shards
    folder."""
    return f"{images_dir}/parts/{shard_set}/{part}"


def shard_parts(rows: int, shards: dict) -> int:
    """How many shard jobs a shard set of `rows` rows gets (`shards`: config.yaml's section): enough
    for every row to have an image; a part past the images written is empty."""
    return jobs(rows, shards["samples_per_shard"] * shards["shards_per_job"])


TRAIN_SPLITS = ("train", "val", "test")  # the `split` column of Train and genus_sampled
WHOLE = "all"  # the shard set of a subset without splits


def shard_sets(subset: str) -> tuple[str, ...]:
    """The shard sets of a subset's shards, each its own shards and sizes.json: one per split for a
    subset with splits (training reads `train` and evaluation `test`, neither filtering samples),
    another subset's one."""
    return TRAIN_SPLITS if subset in SPLIT_SUBSETS else (WHOLE,)


def shard_set(shards_dir: str, name: str) -> str:
    """A shard set's folder: a split's under its subset's shards folder, a whole subset's the folder
    itself."""
    return shards_dir if name == WHOLE else f"{shards_dir}/{name}"


def image_overlap_report(snapshot_dir: str) -> str:
    return f"{snapshot_dir}/images/overlap_report.json"


TRAIN_TEST = "train_test"  # Train's test split, as an evaluation set of the near-duplicate check


def near_duplicates(snapshot_dir: str) -> str:
    """The near-duplicate pairs of the image overlap check as a table (.csv, .md beside it)."""
    return f"{snapshot_dir}/images/near_duplicates"


def shards(snapshot_dir: str, subset: str = "{subset}") -> str:
    """Its shard sets' shard-%06d.tar and sizes.json (shard_set()), shards_report.json and
    shuffle_quality.{csv,md,png}."""
    return f"{snapshot_dir}/shards/{subset}"


def shard_file(number: int) -> str:
    return f"shard-{number:06d}.tar"


SHARD_SIZES = "sizes.json"
SHARDS_REPORT = "shards_report.json"


# -- train -----------------------------------------------------------------------------------------
def model(models: str, date: str = "{date}", recipe: str = "{recipe}") -> str:
    return f"{models}/{date}/{recipe}"


CHECKPOINT = "checkpoint.pt"
TRAIN_ARGV = "argv.json"
METRICS = "metrics.json"  # also each evaluation's and the paper tables' summary: DVC metrics


# -- evaluate and the paper's evaluation tables ----------------------------------------------------
def evaluation(results: str, date: str = "{date}", model_name: str = "{model}") -> str:
    return f"{results}/{date}/eval/{model_name}"


def benchmark_names(evaluate: dict) -> list[str]:
    """The benchmarks config.yaml's `evaluate` section names, in table order: ours as listed, then
    the external ones by name."""
    return list(evaluate["benchmarks"]) + sorted(evaluate["external"])


def predictions(benchmark: str) -> str:
    return f"{benchmark}.predictions.parquet"


def levels(benchmark: str) -> str:
    return f"{benchmark}.levels.parquet"


def paper_tables(results: str, date: str = "{date}") -> str:
    return f"{results}/{date}/paper_tables"


PAPER_TABLES = ("table5_zero_shot", "table8_levels", "table9_top1_top5", "conformal_sets")
PAPER_FIGURES = ("zero_shot_accuracy.png", "conformal_set_size.png")


def shot_bands(results: str, date: str = "{date}") -> str:
    """Top-1 per band of Train images per class, every model and benchmark: table and figure."""
    return f"{results}/{date}/shot_bands"


SHOT_BANDS = "shot_band_accuracy"  # .csv, .md, .tex and .png


# -- exports: the benchmarks and subsets in the field's formats -----------------------------------
def clip_benchmark_export(snapshot_dir: str, benchmark: str = "{benchmark}") -> str:
    """An evaluation benchmark as clip_benchmark's webdataset dataset (`--dataset wds/<name>
    --dataset_root <this folder>`), with a manifest of its samples."""
    return f"{snapshot_dir}/exports/clip_benchmark/{benchmark}"


CLIP_BENCHMARK_MANIFEST = "manifest.csv"


def inat_export(snapshot_dir: str, subset: str = "{subset}") -> str:
    """A subset in the iNaturalist 2021 competition format: <set>.json and <set>.tar (its images,
    <set>/<image_dir_name>/<file>) per set (Train: train, val, test; a benchmark: test)."""
    return f"{snapshot_dir}/exports/inat2021/{subset}"


# -- data card: what a snapshot holds, how it was filtered, its biases and duties ------------------
def data_card(results: str, date: str = "{date}") -> str:
    return f"{results}/{date}/data_card"


DATA_CARD = "data_card.md"
DATA_CARD_FIGURES = ("composition.png", "licenses.png", "observation_years.png", "world_map.png")


# -- diff ------------------------------------------------------------------------------------------
def diff(results: str, previous: str = "{previous}", current: str = "{current}") -> str:
    return f"{results}/diff/{previous}_vs_{current}"


def compared_files(snapshot_dir: str) -> dict[str, str | list[str]]:
    """What the diff reads of each snapshot: the raw tables' folder, the curated table, the species
    table and the subsets' tables (a list, in SUBSETS' order)."""
    return {
        "raw": raw(snapshot_dir),
        "curated": f"{curated(snapshot_dir)}/{CURATED_TABLE}",
        "species": f"{subsets(snapshot_dir)}/{SPECIES_TABLE}",
        "subsets": [subset_table(snapshot_dir, subset) for subset in SUBSETS],
    }


DIFF_REPORT = "report.md"
DIFF_SUMMARY = "report.json"
DIFF_LISTS = (
    "species_images",
    "inactivated_taxa",
    "deleted_photos",
    "license_changes",
    "moved",
    "benchmark_species",
)
DIFF_FIGURES = ("images_per_category.png", "results.png")
