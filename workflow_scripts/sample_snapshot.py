"""Generate the embedded default: a two-month iNaturalist Open Data mirror in the bucket's layout.

    python -m workflow_scripts.sample_snapshot --out data/mirror

writes, exactly as iNaturalist does (TAB, no quoting, header, empty = null):
  photos.csv.gz observations.csv.gz taxa.csv.gz observers.csv.gz   (the newer month)
  metadata/inaturalist-open-data-YYYYMMDD.tar.gz                    (one per month, + -latest)
  inaturalist-taxonomy.dwca.zip                                     (taxa + vernacular names)
  photos/{photo_id}/medium.{ext}                                    (small species-specific images)
  exports/observations-lifestages.csv                               (a web export with life stages)
  _sample/planted.json                                              (what was planted, for tests)
Same seed -> byte-identical files.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gzip
import hashlib
import io
import os
import json
import random
import shutil
import sys
import tarfile
import uuid
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from tqdm import tqdm

from workflow_scripts import sample_images
from workflow_scripts.files import replace_dir
from workflow_scripts.inat_format import COLUMNS, LICENSES, write_row
from workflow_scripts.sample_taxonomy import Species, Taxon, TaxonomyBuilder, build_taxonomy

PAPER_TRAIN_CUTOFF = date(2024, 1, 27)  # images before it count towards the tier targets
KEPT_LICENSES = ("CC0", "CC-BY", "CC-BY-NC")
LICENSE_WEIGHTS = dict(zip(LICENSES, (6, 12, 55, 5, 2, 9, 9, 2)))
EXTENSION_WEIGHTS = {"jpg": 780, "jpeg": 120, "JPG": 60, "png": 37, "gif": 3}
TRUE_FORMAT = {"png": "PNG", "gif": "GIF"}  # everything else is JPEG
ORIGINAL_SIZES = ((2048, 1536), (1536, 2048), (2048, 1365), (2048, 2048), (1024, 768), (2048, 1152))
# (tier, share of a category's species, min, max research-grade kept-license images before the cutoff)
TIERS = (("head", 0.04, 220, 450), ("body", 0.48, 30, 120), ("unseen", 0.27, 10, 29), ("rare", 0.21, 1, 9))
LIFE_STAGES = ("egg", "larva", "pupa", "adult")
BUCKET_URL = "https://inaturalist-open-data.s3.amazonaws.com"
FIRST_NAMES = ["Ana", "José", "Zoë", "Li", "Kwame", "Ingrid", "Mateo", "Aiko", "Olga", "Sam", "Noor", "Émile"]
LAST_NAMES = ["Núñez", "O'Brien", "Müller", "Ng", "Okafor", "Dubois", "Silva", "Kowalski", "\"Doc\" Reyes", "Smith"]


@dataclass
class Photo:
    photo_uuid: str
    photo_id: int
    observation_uuid: str
    observer_id: int
    extension: str
    license: str
    width: int
    height: int
    position: int
    signature: tuple[int, int]  # (genus id, species id) whose pattern the image shows
    stage: str | None = None
    true_format: str = "JPEG"
    pixels_of: int | None = None  # another photo's id: this one is the same image uploaded again

    def row(self) -> tuple:
        return (self.photo_uuid, self.photo_id, self.observation_uuid, self.observer_id, self.extension,
                self.license, self.width, self.height, self.position)


@dataclass
class Observation:
    observation_uuid: str
    observer_id: int
    latitude: str
    longitude: str
    positional_accuracy: str
    taxon_id: int
    quality_grade: str
    observed_on: date | None
    anomaly_score: str

    def row(self) -> tuple:
        return (self.observation_uuid, self.observer_id, self.latitude, self.longitude,
                self.positional_accuracy, self.taxon_id, self.quality_grade,
                "" if self.observed_on is None else self.observed_on.isoformat(), self.anomaly_score)


@dataclass
class Month:
    day: date
    taxa: dict[int, Taxon]
    observations: dict[str, Observation] = field(default_factory=dict)
    photos: list[Photo] = field(default_factory=list)
    observers: dict[int, tuple[str, str]] = field(default_factory=dict)


class Generator:
    def __init__(self, seed: int, months: list[date], scale: float):
        self.rng = random.Random(seed)
        self.months = months
        self.scale = scale
        self.tree: TaxonomyBuilder = build_taxonomy(self.rng, scale)
        self.next_photo_id = 10_000_000
        self.planted: dict = {}
        self.observers: dict[int, tuple[str, str]] = {}
        self.observer_ids: list[int] = []

    # -- identifiers and attributes ---------------------------------------------------------
    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def photo_id(self) -> int:
        self.next_photo_id += self.rng.randint(1, 500)
        return self.next_photo_id

    def weighted(self, weights: dict[str, int]) -> str:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def add_observers(self, count: int) -> None:
        for _ in range(count):
            observer_id = self.rng.randint(1, 9_000_000)
            while observer_id in self.observers:
                observer_id = self.rng.randint(1, 9_000_000)
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            login = f"{first.lower().encode('ascii', 'ignore').decode()}_{observer_id}"  # logins are unique
            name = "" if self.rng.random() < 0.3 else f"{first} {last}"
            self.observers[observer_id] = (login, name)
            self.observer_ids.append(observer_id)

    def observer(self) -> int:
        # a few very active observers, a long tail of occasional ones
        return self.observer_ids[min(int(self.rng.paretovariate(1.2)) - 1, len(self.observer_ids) - 1)]

    def observed_on(self, start: date, end: date) -> date:
        return start + timedelta(days=self.rng.randint(0, (end - start).days))

    def observation(self, taxon_id: int, grade: str, observed: date | None) -> Observation:
        accuracy = "" if self.rng.random() < 0.3 else str(self.rng.choice([3, 5, 10, 31, 76, 488, 2500]))
        anomaly = "" if self.rng.random() < 0.05 else f"{self.rng.random() ** 4:.6f}"
        latitude, longitude = f"{self.rng.uniform(-60, 70):.10f}", f"{self.rng.uniform(-180, 180):.10f}"
        if self.rng.random() < 0.02:  # no location at all
            latitude = longitude = accuracy = ""
        return Observation(self.uuid(), self.observer(), latitude, longitude, accuracy, taxon_id, grade,
                           observed, anomaly)

    def photos_for(self, obs: Observation, count: int, signature: tuple[int, int], license_: str,
                   stage: str | None = None) -> list[Photo]:
        photos = []
        for position in range(count):
            extension = self.weighted(EXTENSION_WEIGHTS)
            width, height = self.rng.choice(ORIGINAL_SIZES)
            photos.append(Photo(self.uuid(), self.photo_id(), obs.observation_uuid, obs.observer_id, extension,
                                license_, width, height, position, signature, stage,
                                TRUE_FORMAT.get(extension, "JPEG")))
        return photos

    def add(self, month: Month, obs: Observation, photos: list[Photo]) -> None:
        month.observations[obs.observation_uuid] = obs
        month.photos.extend(photos)

    # -- month 1 ----------------------------------------------------------------------------
    def assign_targets(self) -> None:
        by_category: dict[str | None, list[Species]] = {}
        for entry in self.tree.species:
            by_category.setdefault(entry.category, []).append(entry)
        for category, entries in by_category.items():
            if category is None:
                for entry in entries:
                    entry.tier, entry.target_images = "other", self.rng.randint(5, 60)
                continue
            tiers = []
            for name, share, low, high in TIERS:
                tiers += [(name, low, high)] * max(1, round(share * len(entries)))
            self.rng.shuffle(tiers)
            for entry, (name, low, high) in zip(entries, tiers + [tiers[-1]] * len(entries)):
                # log-uniform inside the tier: a long tail even within "body"
                target = round(low * (high / low) ** self.rng.random())
                entry.tier, entry.target_images = name, max(1, round(target * self.scale))

    def species_observations(self, month: Month, entry: Species, cutoff_end: date) -> None:
        """Observations of one species until exactly `target_images` photos are 'good'."""
        good = 0
        signature = (entry.genus.taxon_id, entry.taxon.taxon_id)
        while good < entry.target_images:
            taxon = entry.taxon
            if entry.infraspecific and self.rng.random() < 0.25:
                taxon = self.rng.choice(entry.infraspecific)
            grade = self.weighted({"research": 72, "needs_id": 20, "casual": 8})
            observed = None if self.rng.random() < 0.01 else self.observed_on(date(2008, 1, 1), cutoff_end)
            license_ = self.weighted(LICENSE_WEIGHTS)
            count = self.weighted({"1": 55, "2": 25, "3": 12, "4": 8})
            is_good = (grade == "research" and license_ in KEPT_LICENSES and observed is not None
                       and observed < PAPER_TRAIN_CUTOFF)
            count = min(int(count), entry.target_images - good) if is_good else int(count)
            good += count if is_good else 0
            obs = self.observation(taxon.taxon_id, grade, observed)
            self.add(month, obs, self.photos_for(obs, count, signature, license_))

    def first_month(self) -> Month:
        day = self.months[0]
        month = Month(day, copy.deepcopy(self.tree.taxa))
        self.add_observers(round(400 * max(self.scale, 0.25)))
        self.assign_targets()
        for entry in self.tree.species:
            self.species_observations(month, entry, day - timedelta(days=3))
        self.plant_quirks(month)
        self.lifestages(month)
        month.observers = dict(self.observers)
        return month

    def plant_quirks(self, month: Month) -> None:
        taxa = month.taxa
        rng = self.rng

        def research_obs(rank: str, count: int, active: bool = True) -> list[int]:
            candidates = sorted(t.taxon_id for t in taxa.values() if t.rank == rank and t.active == active)
            ids = []
            for _ in range(count):
                taxon_id = rng.choice(candidates)
                obs = self.observation(taxon_id, self.weighted({"research": 80, "needs_id": 20}),
                                       self.observed_on(date(2015, 1, 1), date(2023, 12, 31)))
                self.add(month, obs, self.photos_for(obs, rng.randint(1, 2), (taxon_id, taxon_id), "CC-BY-NC"))
                ids.append(taxon_id)
            return sorted(set(ids))

        self.planted["genus_level_research_taxa"] = research_obs("genus", round(60 * self.scale) + 1)
        self.planted["hybrid_taxa"] = research_obs("hybrid", 12)
        self.planted["inactive_taxa_observed"] = research_obs("species", 15, active=False)
        missing = [9_990_001 + i for i in range(5)]
        for taxon_id in missing:
            obs = self.observation(taxon_id, "research", date(2020, 5, 5))
            self.add(month, obs, self.photos_for(obs, 1, (taxon_id, taxon_id), "CC-BY"))
        self.planted["taxon_ids_missing_from_taxa"] = missing

        head = [e for e in self.tree.species if e.tier == "head"]
        good_photos = [p for p in month.photos if p.license in KEPT_LICENSES and p.position == 0
                       and month.observations[p.observation_uuid].quality_grade == "research"
                       and any(p.signature[1] == e.taxon.taxon_id for e in head)]
        picked = rng.sample(good_photos, 16)
        agree, conflict = [], []
        for i, photo in enumerate(picked):
            original = month.observations[photo.observation_uuid]
            taxon_id = original.taxon_id
            if i % 2:  # conflicting label: another species on the second observation
                taxon_id = rng.choice([e.taxon.taxon_id for e in head if e.taxon.taxon_id != taxon_id])
            twin = self.observation(taxon_id, "research", original.observed_on)
            twin.observer_id = original.observer_id
            duplicate = copy.copy(photo)
            duplicate.observation_uuid, duplicate.position = twin.observation_uuid, 0
            self.add(month, twin, [duplicate])
            (conflict if i % 2 else agree).append(photo.photo_id)
        self.planted["duplicate_photo_ids_agreeing"] = sorted(agree)
        self.planted["duplicate_photo_ids_conflicting"] = sorted(conflict)

        orphans = []
        for _ in range(20):
            ghost = self.observation(rng.choice(head).taxon.taxon_id, "research", date(2021, 6, 1))
            photos = self.photos_for(ghost, 1, (0, ghost.taxon_id), "CC-BY")
            month.photos.extend(photos)  # the observation row itself is missing
            orphans.append(photos[0].photo_id)
        self.planted["orphan_photo_ids"] = sorted(orphans)

        mismatched = [p for p in month.photos if p.extension == "jpg"][:3]
        for photo in mismatched:
            photo.true_format = "PNG"  # named .jpg, bytes are PNG: as in real buckets
        self.planted["photo_ids_png_named_jpg"] = sorted(p.photo_id for p in mismatched)

        reuploads = {}  # the same image uploaded again, as a new photo of a new observation
        for photo in rng.sample([p for p in good_photos if p not in picked], 12):
            original = month.observations[photo.observation_uuid]
            again = self.observation(original.taxon_id, "research", original.observed_on)
            again.observer_id = original.observer_id
            copied = copy.copy(photo)
            copied.photo_uuid, copied.photo_id, copied.pixels_of = self.uuid(), self.photo_id(), photo.photo_id
            copied.observation_uuid, copied.position = again.observation_uuid, 0
            self.add(month, again, [copied])
            reuploads[str(copied.photo_id)] = photo.photo_id
        self.planted["reuploaded_images"] = reuploads

    def lifestages(self, month: Month) -> None:
        """5 insect species x 4 stages, observed after the Train cutoff, with a web export."""
        insects = [e for e in self.tree.species if e.category == "Insecta" and e.tier == "body"
                   and e.taxon.names_en and '"' not in e.taxon.name][:5]
        rows = []
        for entry in insects:
            for stage in LIFE_STAGES:
                for _ in range(10):
                    obs = self.observation(entry.taxon.taxon_id, "research",
                                           self.observed_on(date(2024, 2, 1), date(2024, 5, 20)))
                    photos = self.photos_for(obs, 1, (entry.genus.taxon_id, entry.taxon.taxon_id), "CC-BY-NC", stage)
                    self.add(month, obs, photos)
                    rows.append((obs, photos[0], entry, stage))
        self.planted["lifestage_species"] = sorted(e.taxon.taxon_id for e in insects)
        self.lifestage_rows = rows

    # -- month 2 ----------------------------------------------------------------------------
    def second_month(self, first: Month) -> Month:
        rng = self.rng
        month = copy.deepcopy(first)
        month.day = self.months[1]
        self.add_observers(20)
        body = [e for e in self.tree.species if e.tier == "body" and e.taxon.taxon_id not in self.planted["lifestage_species"]]

        # taxon swap: the old taxon becomes inactive, its observations move to a new active taxon
        swapped = body[0]
        old = month.taxa[swapped.taxon.taxon_id]
        old.active = False
        new = copy.deepcopy(old)
        new.taxon_id, new.active = 9_000_001, True
        new.name = f"{swapped.genus.name} {self.tree.latin(2, ['ensis'], capital=False)}"
        month.taxa[new.taxon_id] = new
        moved = 0
        for obs in month.observations.values():
            if obs.taxon_id == old.taxon_id:
                obs.taxon_id, moved = new.taxon_id, moved + 1
        self.planted["taxon_swap"] = {"old_taxon_id": old.taxon_id, "new_taxon_id": new.taxon_id,
                                      "old_name": old.name, "new_name": new.name, "observations_moved": moved}

        # quality-grade changes both ways
        research = sorted(o.observation_uuid for o in month.observations.values() if o.quality_grade == "research")
        needs_id = sorted(o.observation_uuid for o in month.observations.values() if o.quality_grade == "needs_id")
        downgraded, upgraded = rng.sample(research, 10), rng.sample(needs_id, 10)
        for key in downgraded:
            month.observations[key].quality_grade = "needs_id"
        for key in upgraded:
            month.observations[key].quality_grade = "research"
        self.planted["quality_downgraded"], self.planted["quality_upgraded"] = sorted(downgraded), sorted(upgraded)

        # the biggest species under the Train minimum of 30 reaches 31 through late uploads of old photos
        unseen = [e for e in self.tree.species if e.tier == "unseen"]
        crossing = max(unseen, key=lambda e: (e.target_images, -e.taxon.taxon_id))
        new_uuids = []
        for _ in range(31 - crossing.target_images):
            obs = self.observation(crossing.taxon.taxon_id, "research", date(2023, 6, 1))
            self.add(month, obs, self.photos_for(obs, 1, (crossing.genus.taxon_id, crossing.taxon.taxon_id), "CC-BY"))
            new_uuids.append(obs.observation_uuid)
        self.planted["late_upload_species"] = crossing.taxon.taxon_id

        # new observations of the month (mostly observed in it)
        alive = [e for e in self.tree.species if e is not swapped]
        newcomers = self.observer_ids[-20:]
        for entry in rng.sample(alive, max(5, len(alive) // 3)):
            obs = self.observation(entry.taxon.taxon_id, self.weighted({"research": 30, "needs_id": 70}),
                                   self.observed_on(first.day, month.day - timedelta(days=1)))
            if rng.random() < 0.3:  # people who joined this month
                obs.observer_id = rng.choice(newcomers)
            self.add(month, obs, self.photos_for(obs, rng.randint(1, 3), (entry.genus.taxon_id, entry.taxon.taxon_id),
                                                 self.weighted(LICENSE_WEIGHTS)))
            new_uuids.append(obs.observation_uuid)
        self.planted["new_observations"] = sorted(new_uuids)

        # deleted photos and licence changes
        reuploads = self.planted["reuploaded_images"]
        untouched = sorted({p.photo_id for p in first.photos} - set(self.planted["duplicate_photo_ids_agreeing"])
                           - set(self.planted["duplicate_photo_ids_conflicting"])
                           - set(map(int, reuploads)) - set(reuploads.values()))
        deleted = set(rng.sample(untouched, 10))
        month.photos = [p for p in month.photos if p.photo_id not in deleted]
        self.planted["deleted_photo_ids"] = sorted(deleted)
        changes = {}
        for source, target in (("CC-BY-NC", "CC-BY-NC-ND"), ("CC-BY-SA", "CC-BY")):
            candidates = sorted(p.photo_id for p in month.photos if p.license == source and p.photo_id in untouched)
            for photo_id in rng.sample(candidates, 5):
                changes[photo_id] = (source, target)
        for photo in month.photos:
            if photo.photo_id in changes:
                photo.license = changes[photo.photo_id][1]
        self.planted["license_changes"] = {str(k): list(v) for k, v in sorted(changes.items())}
        month.observers = dict(self.observers)
        return month


# -- writers --------------------------------------------------------------------------------
def table_texts(month: Month, rng: random.Random) -> dict[str, str]:
    """Each table as the exporter writes it; rows in a shuffled (not sorted) order, like real dumps."""
    active_observers = {o.observer_id for o in month.observations.values()} | {p.observer_id for p in month.photos}
    rows = {
        "observations": [o.row() for o in month.observations.values()],
        "photos": [p.row() for p in month.photos],
        "taxa": [(t.taxon_id, t.ancestry, t.rank_level, t.rank, t.name, "true" if t.active else "false")
                 for t in month.taxa.values()],
        # like the real export: only observers with something in this snapshot
        "observers": [(k, *v) for k, v in month.observers.items() if k in active_observers],
    }
    texts = {}
    for table, table_rows in rows.items():
        table_rows = sorted(table_rows, key=lambda r: tuple(map(str, r)))
        rng.shuffle(table_rows)
        out = io.StringIO()
        write_row(out, COLUMNS[table])
        for row in table_rows:
            write_row(out, row)
        texts[table] = out.getvalue()
    return texts


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buffer.getvalue()


def bundle_bytes(day: date, texts: dict[str, str]) -> bytes:
    """metadata/inaturalist-open-data-YYYYMMDD.tar.gz: a folder of plain CSVs, fixed mtimes."""
    folder = f"inaturalist-open-data-{day:%Y%m%d}"
    mtime = int((day - date(1970, 1, 1)).total_seconds())
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
            for table in sorted(texts):
                data = texts[table].encode()
                info = tarfile.TarInfo(f"{folder}/{table}.csv")
                info.size, info.mode, info.mtime = len(data), 0o644, mtime
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def csv_line(fields: list[str], always_quoted: set[int] = frozenset()) -> str:
    """A DwC-A CSV line as iNaturalist writes it: minimal quoting, some columns always quoted."""
    out = []
    for i, value in enumerate(fields):
        if i in always_quoted or any(c in value for c in ',"\n'):
            value = '"' + value.replace('"', '""') + '"'
        out.append(value)
    return ",".join(out) + "\n"


def dwca_bytes(month: Month) -> bytes:
    """inaturalist-taxonomy.dwca.zip: active taxa with their rank columns, vernacular names."""
    taxa = month.taxa
    url = "https://www.inaturalist.org/taxa/"
    ranks = ("kingdom", "phylum", "class", "order", "family", "genus")
    taxa_lines = [csv_line(["id", "taxonID", "identifier", "parentNameUsageID", *ranks, "specificEpithet",
                            "infraspecificEpithet", "modified", "scientificName", "taxonRank", "references"])]
    languages = {"english": ("en", "English"), "spanish": ("es", "Spanish")}
    vernacular = {lang: [csv_line(["id", "vernacularName", "language", "locality", "countryCode", "source",
                                   "lexicon", "contributor", "created"])] for lang in languages}
    modified = f"{month.day - timedelta(days=5)}T06:05:44Z"
    for taxon in sorted((t for t in taxa.values() if t.active), key=lambda t: t.taxon_id):
        lineage = [taxa[int(i)] for i in taxon.ancestry.split("/") if i and int(i) in taxa] + [taxon]
        by_rank = {t.rank: t.name for t in lineage}
        words = taxon.name.split()
        epithet = words[1] if taxon.rank in ("species", "subspecies", "variety") and len(words) > 1 else ""
        infra = words[2] if taxon.rank in ("subspecies", "variety") and len(words) > 2 else ""
        parent = f"{url}{taxon.parent_id}" if taxon.parent_id else ""
        taxa_lines.append(csv_line([str(taxon.taxon_id), f"{url}{taxon.taxon_id}", f"{url}{taxon.taxon_id}", parent,
                                    *(by_rank.get(r, "") for r in ranks), epithet, infra, modified, taxon.name,
                                    taxon.rank, ""]))
        for lang, names in (("english", taxon.names_en), ("spanish", taxon.names_es)):
            code, lexicon = languages[lang]
            for i, name in enumerate(names):
                created = f"{2010 + (taxon.taxon_id + i) % 14}-03-13T02:35:{10 + i:02d}Z"
                vernacular[lang].append(csv_line([str(taxon.taxon_id), name, code, "", "", "iNaturalist",
                                                  lexicon, "", created], always_quoted={3, 4}))
    meta = ('<?xml version="1.0" encoding="UTF-8"?>\n<archive xmlns="http://rs.tdwg.org/dwc/text/">\n'
            '  <core encoding="UTF-8" fieldsTerminatedBy="," linesTerminatedBy="\\n" fieldsEnclosedBy="&quot;" '
            'ignoreHeaderLines="1" rowType="http://rs.tdwg.org/dwc/terms/Taxon">\n'
            '    <files><location>taxa.csv</location></files>\n    <id index="0"/>\n  </core>\n')
    for lang in languages:
        meta += ('  <extension encoding="UTF-8" fieldsTerminatedBy="," linesTerminatedBy="\\n" fieldsEnclosedBy="&quot;" '
                 'ignoreHeaderLines="1" rowType="http://rs.gbif.org/terms/1.0/VernacularName">\n'
                 f'    <files><location>VernacularNames-{lang}.csv</location></files>\n    <coreid index="0"/>\n'
                 '  </extension>\n')
    meta += "</archive>\n"
    members = {"meta.xml": meta, "eml.xml": '<?xml version="1.0" encoding="UTF-8"?>\n<eml:eml packageId="sample"/>\n',
               "taxa.csv": "".join(taxa_lines)}
    members.update({f"VernacularNames-{lang}.csv": "".join(lines) for lang, lines in vernacular.items()})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(month.day.year, month.day.month, month.day.day, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()


def lifestages_csv(gen: Generator) -> str:
    """The iNaturalist web-export shape (comma-separated), with the Life Stage annotation column."""
    header = ["id", "uuid", "observed_on", "user_id", "user_login", "user_name", "quality_grade", "license", "url",
              "image_url", "latitude", "longitude", "scientific_name", "common_name", "iconic_taxon_name",
              "taxon_id", "Life Stage"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for number, (obs, photo, entry, stage) in enumerate(gen.lifestage_rows, start=200_000_001):
        login, name = gen.observers[obs.observer_id]
        writer.writerow([number, obs.observation_uuid, obs.observed_on.isoformat(), obs.observer_id, login, name,
                         obs.quality_grade, photo.license, f"https://www.inaturalist.org/observations/{number}",
                         f"{BUCKET_URL}/photos/{photo.photo_id}/medium.{photo.extension}", obs.latitude,
                         obs.longitude, entry.taxon.name, entry.taxon.names_en[0], "Insecta", entry.taxon.taxon_id,
                         stage.capitalize()])
    return out.getvalue()


def _write_image_batch(out: Path, photos: list[Photo], long_side: int) -> int:
    """Render and write some photos; each image depends only on its photo, so batches can run anywhere."""
    signatures: dict[tuple[int, int], dict] = {}
    for photo in photos:
        if photo.signature not in signatures:
            signatures[photo.signature] = sample_images.species_signature(*photo.signature)
        width, height = sample_images.medium_size(photo.width, photo.height, long_side)
        pixels = sample_images.render(signatures[photo.signature], width, height, photo.pixels_of or photo.photo_id,
                                      photo.stage)
        target = out / "photos" / str(photo.photo_id) / f"medium.{photo.extension}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sample_images.encode(pixels, photo.true_format))
    return len(photos)


def write_images(out: Path, photos: dict[int, Photo], long_side: int, workers: int) -> None:
    ordered = [photos[k] for k in sorted(photos)]
    batches = [ordered[i:i + 1000] for i in range(0, len(ordered), 1000)]
    with tqdm(total=len(ordered), desc="sample images", unit="img", mininterval=2, file=sys.stderr) as bar, \
            ProcessPoolExecutor(workers) as pool:
        for done in pool.map(_write_image_batch, [out] * len(batches), batches, [long_side] * len(batches)):
            bar.update(done)


def write_checksums(root: Path, target: Path) -> None:
    """`sha256  path` for every file of the mirror: how DVC tracks 30,000 small files cheaply."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}\n"
             for p in sorted(root.rglob("*")) if p.is_file()]
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(target)


def generate(out: Path, seed: int, months: list[date], scale: float = 1.0, image_size: int = 64,
             images: bool = True, workers: int = 1) -> dict:
    """Write the mirror into `out` (atomically: a temporary folder renamed at the end)."""
    if len(months) != 2 or months[0] >= months[1]:
        raise ValueError(f"expected two increasing snapshot dates, got {months}")
    gen = Generator(seed, months, scale)
    first = gen.first_month()
    second = gen.second_month(first)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "metadata").mkdir(parents=True)
    for month in (first, second):
        texts = table_texts(month, random.Random(f"{seed}-{month.day}"))
        bundle = bundle_bytes(month.day, texts)
        (tmp / "metadata" / f"inaturalist-open-data-{month.day:%Y%m%d}.tar.gz").write_bytes(bundle)
    (tmp / "metadata" / "inaturalist-open-data-latest.tar.gz").write_bytes(bundle)
    for table, text in texts.items():  # the bucket root holds the newest month
        (tmp / f"{table}.csv.gz").write_bytes(gzip_bytes(text.encode()))
    (tmp / "inaturalist-taxonomy.dwca.zip").write_bytes(dwca_bytes(second))
    (tmp / "exports").mkdir()
    (tmp / "exports" / "observations-lifestages.csv").write_text(lifestages_csv(gen), encoding="utf-8")
    if images:
        deleted = set(gen.planted["deleted_photo_ids"])
        everything = {p.photo_id: p for p in first.photos + second.photos if p.photo_id not in deleted}
        write_images(tmp, everything, image_size, workers)
    summary = {
        "seed": seed, "months": [m.isoformat() for m in months], "scale": scale,
        "photos_rows": {m.day.isoformat(): len(m.photos) for m in (first, second)},
        "observations_rows": {m.day.isoformat(): len(m.observations) for m in (first, second)},
        "species": {tier: sorted(e.taxon.taxon_id for e in gen.tree.species if e.tier == tier)
                    for tier in ("head", "body", "unseen", "rare", "other")},
        "target_images": {str(e.taxon.taxon_id): e.target_images for e in gen.tree.species},
        "planted": gen.planted,
    }
    (tmp / "_sample").mkdir()
    (tmp / "_sample" / "planted.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    replace_dir(tmp, out)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.sample_snapshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="mirror folder to write (replaced if present)")
    parser.add_argument("--seed", type=int, default=20240927)
    parser.add_argument("--months", nargs=2, type=date.fromisoformat, default=[date(2024, 8, 27), date(2024, 9, 27)],
                        metavar="YYYY-MM-DD", help="the two snapshot dates (older first)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies species and image counts")
    parser.add_argument("--image-size", type=int, default=64, help="long side of the medium images, px")
    parser.add_argument("--no-images", action="store_true", help="tables only (benchmarks)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes rendering images")
    parser.add_argument("--checksums", type=Path, help="also write a sha256 list of every mirror file here")
    args = parser.parse_args(argv)
    summary = generate(args.out, args.seed, args.months, args.scale, args.image_size, not args.no_images,
                       args.workers)
    if args.checksums:
        write_checksums(args.out, args.checksums)
    print(f"wrote {args.out}: photo rows per month {summary['photos_rows']}, "
          f"{sum(len(v) for v in summary['species'].values())} species", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
