"""The two months of the sample: taxa, observers, observations and photos, with the quirks of
real dumps and the changes of a month (see docs/sample.md).

Thresholds come from the configuration schema's defaults (Train's minimum, Unseen's, the
observation cutoff, the licences curation keeps), so the sample exercises the pipeline's own
defaults; every random choice comes from one seeded generator.
"""

from __future__ import annotations

import copy
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

from workflow_scripts.common.config import settings
from workflow_scripts.common.inat_format import LICENSES
from workflow_scripts.sample.images import NEAR_DUPLICATE_EDITS, PLACEHOLDER_SIZE
from workflow_scripts.sample.taxonomy import Species, Taxon, TaxonomyBuilder, build_taxonomy

SUBSETS, CURATE = settings("subsets"), settings("curate")
TRAIN_CUTOFF = date.fromisoformat(
    SUBSETS["observed_before"]
)  # images before it count towards the tier targets
TRAIN_MIN, UNSEEN_MIN = SUBSETS["min_images"], SUBSETS["unseen_min_images"]
KEPT_LICENSES = tuple(CURATE["licenses"])
LICENSE_WEIGHTS = dict(zip(LICENSES, (6, 12, 55, 5, 2, 9, 9, 2)))
EXTENSION_WEIGHTS = {"jpg": 780, "jpeg": 120, "JPG": 60, "png": 37, "gif": 3}
TRUE_FORMAT = {"png": "PNG", "gif": "GIF"}  # everything else is JPEG
ORIGINAL_SIZES = ((2048, 1536), (1536, 2048), (2048, 1365), (2048, 2048), (1024, 768), (2048, 1152))
# (tier, share of a category's species, min, max research-grade kept-license images before the
# cutoff)
TIERS = (
    ("head", 0.04, 220, 450),
    ("body", 0.48, TRAIN_MIN, 4 * TRAIN_MIN),
    ("unseen", 0.27, UNSEEN_MIN, TRAIN_MIN - 1),
    ("rare", 0.21, 1, UNSEEN_MIN - 1),
)
LIFE_STAGES = tuple(SUBSETS["lifestages"]["stages"])
FIRST_NAMES = [
    "Ana",
    "José",
    "Zoë",
    "Li",
    "Kwame",
    "Ingrid",
    "Mateo",
    "Aiko",
    "Olga",
    "Sam",
    "Noor",
    "Émile",
]
LAST_NAMES = [
    "Núñez",
    "O'Brien",
    "Müller",
    "Ng",
    "Okafor",
    "Dubois",
    "Silva",
    "Kowalski",
    '"Doc" Reyes',
    "Smith",
]


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
    edit: str | None = (
        None  # how the re-upload was changed (images.NEAR_DUPLICATE_EDITS), if it was
    )
    rotated: bool = False  # turned a quarter since the month before: width and height swapped
    placeholder: bool = False  # flagged: its bytes are iNaturalist's placeholder image

    def row(self) -> tuple:
        return (
            self.photo_uuid,
            self.photo_id,
            self.observation_uuid,
            self.observer_id,
            self.extension,
            self.license,
            self.width,
            self.height,
            self.position,
        )


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
        return (
            self.observation_uuid,
            self.observer_id,
            self.latitude,
            self.longitude,
            self.positional_accuracy,
            self.taxon_id,
            self.quality_grade,
            "" if self.observed_on is None else self.observed_on.isoformat(),
            self.anomaly_score,
        )


@dataclass
class Month:
    day: date
    taxa: dict[int, Taxon]
    observations: dict[str, Observation] = field(default_factory=dict)
    photos: list[Photo] = field(default_factory=list)
    observers: dict[int, tuple[str, str]] = field(default_factory=dict)

    def next(self, day: date) -> Month:
        """A copy to change into the next month: its own taxa, observations and photos (the rows a
        month changes), in the same order."""
        return Month(
            day,
            copy.deepcopy(self.taxa),
            {k: copy.copy(o) for k, o in self.observations.items()},
            [copy.copy(p) for p in self.photos],
            dict(self.observers),
        )


class Generator:
    def __init__(self, seed: int, months: list[date], scale: float):
        self.seed = seed
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
            # logins are unique
            login = f"{first.lower().encode('ascii', 'ignore').decode()}_{observer_id}"
            name = "" if self.rng.random() < 0.3 else f"{first} {last}"
            self.observers[observer_id] = (login, name)
            self.observer_ids.append(observer_id)

    def observer(self) -> int:
        # a few very active observers, a long tail of occasional ones
        return self.observer_ids[
            min(int(self.rng.paretovariate(1.2)) - 1, len(self.observer_ids) - 1)
        ]

    def observed_on(self, start: date, end: date) -> date:
        return start + timedelta(days=self.rng.randint(0, (end - start).days))

    def observation(self, taxon_id: int, grade: str, observed: date | None) -> Observation:
        accuracy = (
            "" if self.rng.random() < 0.3 else str(self.rng.choice([3, 5, 10, 31, 76, 488, 2500]))
        )
        anomaly = "" if self.rng.random() < 0.05 else f"{self.rng.random() ** 4:.6f}"
        latitude, longitude = (
            f"{self.rng.uniform(-60, 70):.10f}",
            f"{self.rng.uniform(-180, 180):.10f}",
        )
        if self.rng.random() < 0.02:  # no location at all
            latitude = longitude = accuracy = ""
        return Observation(
            self.uuid(),
            self.observer(),
            latitude,
            longitude,
            accuracy,
            taxon_id,
            grade,
            observed,
            anomaly,
        )

    def photos_for(
        self,
        obs: Observation,
        count: int,
        signature: tuple[int, int],
        license_: str,
        stage: str | None = None,
    ) -> list[Photo]:
        photos = []
        for position in range(count):
            extension = self.weighted(EXTENSION_WEIGHTS)
            width, height = self.rng.choice(ORIGINAL_SIZES)
            photos.append(
                Photo(
                    self.uuid(),
                    self.photo_id(),
                    obs.observation_uuid,
                    obs.observer_id,
                    extension,
                    license_,
                    width,
                    height,
                    position,
                    signature,
                    stage,
                    TRUE_FORMAT.get(extension, "JPEG"),
                )
            )
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
            for name, share, low, high in TIERS:  # at small scales a category may lack a tier
                tiers += [(name, low, high)] * round(share * len(entries))
            self.rng.shuffle(tiers)
            for entry, (name, low, high) in zip(entries, tiers + [tiers[-1]] * len(entries)):
                # log-uniform inside the tier: a long tail even within "body"
                target = round(low * (high / low) ** self.rng.random())
                entry.tier, entry.target_images = name, target

    def largest_species(self, at_least: int = 2) -> list[Species]:
        """The head tier, in tree order; a small sample with fewer head species takes its
        largest."""
        head = [e for e in self.tree.species if e.tier == "head"]
        if len(head) >= at_least:
            return head
        top = sorted(self.tree.species, key=lambda e: (e.target_images, e.taxon.taxon_id))[
            -at_least:
        ]
        return [e for e in self.tree.species if e in top]

    def species_observations(self, month: Month, entry: Species, cutoff_end: date) -> None:
        """Observations of one species until exactly `target_images` photos are 'good'."""
        good = 0
        signature = (entry.genus.taxon_id, entry.taxon.taxon_id)
        while good < entry.target_images:
            taxon = entry.taxon
            if entry.infraspecific and self.rng.random() < 0.25:
                taxon = self.rng.choice(entry.infraspecific)
            grade = self.weighted({"research": 72, "needs_id": 20, "casual": 8})
            observed = (
                None if self.rng.random() < 0.01 else self.observed_on(date(2008, 1, 1), cutoff_end)
            )
            license_ = self.weighted(LICENSE_WEIGHTS)
            count = self.weighted({"1": 55, "2": 25, "3": 12, "4": 8})
            is_good = (
                grade == "research"
                and license_ in KEPT_LICENSES
                and observed is not None
                and observed < TRAIN_CUTOFF
            )
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
        self.near_duplicates(month)
        month.observers = dict(self.observers)
        return month

    def plant_quirks(self, month: Month) -> None:
        taxa = month.taxa
        rng = self.rng

        def research_obs(rank: str, count: int, active: bool = True) -> list[int]:
            candidates = sorted(
                t.taxon_id for t in taxa.values() if t.rank == rank and t.active == active
            )
            ids = []
            for _ in range(count if candidates else 0):  # a small sample may have no hybrid
                taxon_id = rng.choice(candidates)
                obs = self.observation(
                    taxon_id,
                    self.weighted({"research": 80, "needs_id": 20}),
                    self.observed_on(date(2015, 1, 1), date(2023, 12, 31)),
                )
                self.add(
                    month,
                    obs,
                    self.photos_for(obs, rng.randint(1, 2), (taxon_id, taxon_id), "CC-BY-NC"),
                )
                ids.append(taxon_id)
            return sorted(set(ids))

        self.planted["genus_level_research_taxa"] = research_obs(
            "genus", round(60 * self.scale) + 1
        )
        self.planted["hybrid_taxa"] = research_obs("hybrid", 12)
        self.planted["inactive_taxa_observed"] = research_obs("species", 15, active=False)
        missing = [9_990_001 + i for i in range(5)]
        for taxon_id in missing:
            obs = self.observation(taxon_id, "research", date(2020, 5, 5))
            self.add(month, obs, self.photos_for(obs, 1, (taxon_id, taxon_id), "CC-BY"))
        self.planted["taxon_ids_missing_from_taxa"] = missing

        head = self.largest_species()
        good_photos = [
            p
            for p in month.photos
            if p.license in KEPT_LICENSES
            and p.position == 0
            and month.observations[p.observation_uuid].quality_grade == "research"
            and any(p.signature[1] == e.taxon.taxon_id for e in head)
        ]
        picked = rng.sample(good_photos, 16)
        agree, conflict = [], []
        for i, photo in enumerate(picked):
            original = month.observations[photo.observation_uuid]
            taxon_id = original.taxon_id
            if i % 2:  # conflicting label: another species on the second observation
                taxon_id = rng.choice(
                    [e.taxon.taxon_id for e in head if e.taxon.taxon_id != taxon_id]
                )
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
            copied.photo_uuid, copied.photo_id, copied.pixels_of = (
                self.uuid(),
                self.photo_id(),
                photo.photo_id,
            )
            copied.observation_uuid, copied.position = again.observation_uuid, 0
            self.add(month, again, [copied])
            reuploads[str(copied.photo_id)] = photo.photo_id
        self.planted["reuploaded_images"] = reuploads

    def lifestages(self, month: Month) -> None:
        """5 insect species x 4 stages, observed after the Train cutoff, with a web export."""
        insects = [
            e
            for e in self.tree.species
            if e.category == "Insecta"
            and e.tier == "body"
            and e.taxon.names_en
            and '"' not in e.taxon.name
        ][:5]
        rows = []
        for entry in insects:
            for stage in LIFE_STAGES:
                for _ in range(10):
                    obs = self.observation(
                        entry.taxon.taxon_id,
                        "research",
                        self.observed_on(date(2024, 2, 1), date(2024, 5, 20)),
                    )
                    photos = self.photos_for(
                        obs, 1, (entry.genus.taxon_id, entry.taxon.taxon_id), "CC-BY-NC", stage
                    )
                    self.add(month, obs, photos)
                    rows.append((obs, photos[0], entry, stage))
        self.planted["lifestage_species"] = sorted(e.taxon.taxon_id for e in insects)
        self.lifestage_rows = rows

    def near_duplicates(self, month: Month) -> None:
        """The same picture uploaded again, changed (NEAR_DUPLICATE_EDITS), as a photo of a new
        observation of its species observed before the cutoff (so it can go into Train): per edit,
        copies of LifeStages photos (an evaluation set) and of the largest species' photos
        (Train)."""
        lifestage_photos = [photo for _, photo, _, _ in self.lifestage_rows]
        head = {e.taxon.taxon_id for e in self.largest_species()}
        reused = set(
            self.planted["duplicate_photo_ids_agreeing"]
            + self.planted["duplicate_photo_ids_conflicting"]
            + list(self.planted["reuploaded_images"].values())
        )
        train_photos = [
            p
            for p in month.photos
            if p.signature[1] in head
            and p.position == 0
            and p.pixels_of is None
            and p.photo_id not in reused
            and p.observation_uuid in month.observations  # not an orphan
            and month.observations[p.observation_uuid].quality_grade == "research"
            and p.license in KEPT_LICENSES
        ]
        pairs, kinds = [], {}
        for kind in NEAR_DUPLICATE_EDITS:
            originals = self.rng.sample(lifestage_photos, 5) + self.rng.sample(
                train_photos, min(3, len(train_photos))
            )
            for photo in originals:
                lifestage_photos = [p for p in lifestage_photos if p is not photo]
                train_photos = [p for p in train_photos if p is not photo]
                original = month.observations[photo.observation_uuid]
                again = self.observation(
                    original.taxon_id,
                    "research",
                    self.observed_on(date(2016, 1, 1), TRAIN_CUTOFF - timedelta(days=1)),
                )
                copied = copy.copy(photo)
                copied.photo_uuid, copied.photo_id, copied.pixels_of = (
                    self.uuid(),
                    self.photo_id(),
                    photo.photo_id,
                )
                copied.observation_uuid, copied.position, copied.edit = (
                    again.observation_uuid,
                    0,
                    kind,
                )
                copied.extension, copied.true_format, copied.license = "jpg", "JPEG", "CC-BY"
                self.add(month, again, [copied])
                pairs.append([photo.photo_id, copied.photo_id])
                kinds[str(copied.photo_id)] = kind
        self.planted["near_duplicates"], self.planted["near_duplicate_edits"] = pairs, kinds

    # -- month 2 ----------------------------------------------------------------------------
    def second_month(self, first: Month) -> Month:
        rng = self.rng
        month = first.next(self.months[1])
        self.add_observers(20)
        body = [
            e
            for e in self.tree.species
            if e.tier == "body" and e.taxon.taxon_id not in self.planted["lifestage_species"]
        ]

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
        self.planted["taxon_swap"] = {
            "old_taxon_id": old.taxon_id,
            "new_taxon_id": new.taxon_id,
            "old_name": old.name,
            "new_name": new.name,
            "observations_moved": moved,
        }

        # quality-grade changes both ways
        research = sorted(
            o.observation_uuid for o in month.observations.values() if o.quality_grade == "research"
        )
        needs_id = sorted(
            o.observation_uuid for o in month.observations.values() if o.quality_grade == "needs_id"
        )
        downgraded, upgraded = rng.sample(research, 10), rng.sample(needs_id, 10)
        for key in downgraded:
            month.observations[key].quality_grade = "needs_id"
        for key in upgraded:
            month.observations[key].quality_grade = "research"
        self.planted["quality_downgraded"], self.planted["quality_upgraded"] = (
            sorted(downgraded),
            sorted(upgraded),
        )

        # the biggest species under Train's minimum reaches the minimum + 1 through late uploads of
        # old photos
        unseen = [e for e in self.tree.species if e.tier == "unseen"]
        crossing = max(unseen, key=lambda e: (e.target_images, -e.taxon.taxon_id))
        new_uuids = []
        for _ in range(TRAIN_MIN + 1 - crossing.target_images):
            obs = self.observation(crossing.taxon.taxon_id, "research", date(2023, 6, 1))
            self.add(
                month,
                obs,
                self.photos_for(
                    obs, 1, (crossing.genus.taxon_id, crossing.taxon.taxon_id), "CC-BY"
                ),
            )
            new_uuids.append(obs.observation_uuid)
        self.planted["late_upload_species"] = crossing.taxon.taxon_id

        # new observations of the month (mostly observed in it)
        alive = [e for e in self.tree.species if e is not swapped]
        newcomers = self.observer_ids[-20:]
        for entry in rng.sample(alive, max(5, len(alive) // 3)):
            obs = self.observation(
                entry.taxon.taxon_id,
                self.weighted({"research": 30, "needs_id": 70}),
                self.observed_on(first.day, month.day - timedelta(days=1)),
            )
            if rng.random() < 0.3:  # people who joined this month
                obs.observer_id = rng.choice(newcomers)
            self.add(
                month,
                obs,
                self.photos_for(
                    obs,
                    rng.randint(1, 3),
                    (entry.genus.taxon_id, entry.taxon.taxon_id),
                    self.weighted(LICENSE_WEIGHTS),
                ),
            )
            new_uuids.append(obs.observation_uuid)
        self.planted["new_observations"] = sorted(new_uuids)

        # deleted photos and licence changes
        reuploads = self.planted["reuploaded_images"]
        untouched = (
            {p.photo_id for p in first.photos}
            - set(self.planted["duplicate_photo_ids_agreeing"])
            - set(self.planted["duplicate_photo_ids_conflicting"])
            - set(map(int, reuploads))
            - set(reuploads.values())
            - {photo for pair in self.planted["near_duplicates"] for photo in pair}
        )
        deleted = set(rng.sample(sorted(untouched), 10))
        month.photos = [p for p in month.photos if p.photo_id not in deleted]
        self.planted["deleted_photo_ids"] = sorted(deleted)
        changes = {}
        for source, target in (("CC-BY-NC", "CC-BY-NC-ND"), ("CC-BY-SA", "CC-BY")):
            candidates = sorted(
                p.photo_id for p in month.photos if p.license == source and p.photo_id in untouched
            )
            for photo_id in rng.sample(candidates, 5):
                changes[photo_id] = (source, target)
        for photo in month.photos:
            if photo.photo_id in changes:
                photo.license = changes[photo.photo_id][1]
        self.planted["license_changes"] = {str(k): list(v) for k, v in sorted(changes.items())}
        self.changed_files(month, untouched - deleted - set(changes))
        month.observers = dict(self.observers)
        return month

    def changed_files(self, month: Month, untouched: set[int]) -> None:
        """A photo rotated since the month before (its width and height swap, its bytes change) and
        one replaced by the placeholder image (its metadata then gives the placeholder's size),
        both of Train's species (not the swapped one), research grade in both months, first in
        their observation, not square. Drawn by their own generator, so that every earlier draw
        stays."""
        trained = {
            e.taxon.taxon_id
            for e in self.tree.species
            if e.tier in ("head", "body")
            and e.taxon.taxon_id != self.planted["taxon_swap"]["old_taxon_id"]
        }
        research = {  # and observed before Train's cutoff
            key
            for key, obs in month.observations.items()
            if obs.quality_grade == "research"
            and obs.observed_on is not None
            and obs.observed_on < TRAIN_CUTOFF
        }
        candidates = sorted(
            p.photo_id
            for p in month.photos
            if p.photo_id in untouched
            and p.position == 0
            and p.extension == "jpg"
            and p.width != p.height  # a square photo turned keeps its key
            and p.license in KEPT_LICENSES
            and p.signature[1] in trained
            and p.observation_uuid in research
            and p.observation_uuid not in self.planted["quality_upgraded"]
        )
        rotated, placeholder = random.Random(f"{self.seed}-images").sample(candidates, 2)
        for photo in month.photos:
            if photo.photo_id == rotated:
                photo.width, photo.height, photo.rotated = photo.height, photo.width, True
            elif photo.photo_id == placeholder:
                photo.width, photo.height = PLACEHOLDER_SIZE  # what iNat's metadata then says
                photo.placeholder = True
        self.planted["rotated_photo"], self.planted["placeholder_photo"] = rotated, placeholder
