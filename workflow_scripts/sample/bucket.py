"""Write the sample as iNaturalist publishes it: the bucket (TAB-separated tables with no quoting,
monthly bundles, the taxonomy archive, photos), a web export with life stages, and the list of
what was planted. Same seed, same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import sys
import tarfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow_scripts.common import contracts
from workflow_scripts.common.config import settings as sample_settings
from workflow_scripts.common.files import building
from workflow_scripts.common.inat_format import COLUMNS, write_row
from workflow_scripts.common.tars import packing
from workflow_scripts.common.taxonomy import ABOVE_SPECIES
from workflow_scripts.sample import images
from workflow_scripts.sample.generator import CURATE, Generator, Month, Photo

PHOTO_URL = f"{CURATE['photo_url_prefix']}/{{photo_id}}/{CURATE['photo_size']}.{{extension}}"


def table_texts(month: Month, rng: random.Random) -> dict[str, str]:
    """Each table as the exporter writes it; rows in a shuffled (not sorted) order, like real
    dumps."""
    active_observers = {o.observer_id for o in month.observations.values()} | {
        p.observer_id for p in month.photos
    }
    rows = {
        "observations": [o.row() for o in month.observations.values()],
        "photos": [p.row() for p in month.photos],
        "taxa": [
            (t.taxon_id, t.ancestry, t.rank_level, t.rank, t.name, "true" if t.active else "false")
            for t in month.taxa.values()
        ],
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
    taxa_lines = [
        csv_line(
            [
                "id",
                "taxonID",
                "identifier",
                "parentNameUsageID",
                *ABOVE_SPECIES,
                "specificEpithet",
                "infraspecificEpithet",
                "modified",
                "scientificName",
                "taxonRank",
                "references",
            ]
        )
    ]
    languages = {"english": ("en", "English"), "spanish": ("es", "Spanish")}
    vernacular = {
        lang: [
            csv_line(
                [
                    "id",
                    "vernacularName",
                    "language",
                    "locality",
                    "countryCode",
                    "source",
                    "lexicon",
                    "contributor",
                    "created",
                ]
            )
        ]
        for lang in languages
    }
    modified = f"{month.day - timedelta(days=5)}T06:05:44Z"
    for taxon in sorted((t for t in taxa.values() if t.active), key=lambda t: t.taxon_id):
        lineage = [taxa[int(i)] for i in taxon.ancestry.split("/") if i and int(i) in taxa] + [
            taxon
        ]
        by_rank = {t.rank: t.name for t in lineage}
        words = taxon.name.split()
        epithet = (
            words[1]
            if taxon.rank in ("species", "subspecies", "variety") and len(words) > 1
            else ""
        )
        infra = words[2] if taxon.rank in ("subspecies", "variety") and len(words) > 2 else ""
        parent = f"{url}{taxon.parent_id}" if taxon.parent_id else ""
        taxa_lines.append(
            csv_line(
                [
                    str(taxon.taxon_id),
                    f"{url}{taxon.taxon_id}",
                    f"{url}{taxon.taxon_id}",
                    parent,
                    *(by_rank.get(r, "") for r in ABOVE_SPECIES),
                    epithet,
                    infra,
                    modified,
                    taxon.name,
                    taxon.rank,
                    "",
                ]
            )
        )
        for lang, names in (("english", taxon.names_en), ("spanish", taxon.names_es)):
            code, lexicon = languages[lang]
            for i, name in enumerate(names):
                created = f"{2010 + (taxon.taxon_id + i) % 14}-03-13T02:35:{10 + i:02d}Z"
                vernacular[lang].append(
                    csv_line(
                        [
                            str(taxon.taxon_id),
                            name,
                            code,
                            "",
                            "",
                            "iNaturalist",
                            lexicon,
                            "",
                            created,
                        ],
                        always_quoted={3, 4},
                    )
                )
    meta = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<archive xmlns="http://rs.tdwg.org/dwc/text/">\n'
        '  <core encoding="UTF-8" fieldsTerminatedBy="," linesTerminatedBy="\\n" '
        'fieldsEnclosedBy="&quot;" ignoreHeaderLines="1" '
        'rowType="http://rs.tdwg.org/dwc/terms/Taxon">\n'
        '    <files><location>taxa.csv</location></files>\n    <id index="0"/>\n  </core>\n'
    )
    for lang in languages:
        meta += (
            '  <extension encoding="UTF-8" fieldsTerminatedBy="," linesTerminatedBy="\\n" '
            'fieldsEnclosedBy="&quot;" ignoreHeaderLines="1" '
            'rowType="http://rs.gbif.org/terms/1.0/VernacularName">\n'
            f"    <files><location>VernacularNames-{lang}.csv</location></files>\n"
            '    <coreid index="0"/>\n'
            "  </extension>\n"
        )
    meta += "</archive>\n"
    members = {
        "meta.xml": meta,
        "eml.xml": '<?xml version="1.0" encoding="UTF-8"?>\n<eml:eml packageId="sample"/>\n',
        "taxa.csv": "".join(taxa_lines),
    }
    members.update(
        {f"VernacularNames-{lang}.csv": "".join(lines) for lang, lines in vernacular.items()}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(
                name, date_time=(month.day.year, month.day.month, month.day.day, 0, 0, 0)
            )
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()


def lifestages_csv(gen: Generator) -> str:
    """The iNaturalist web-export shape (comma-separated), with the Life Stage annotation column."""
    header = [
        "id",
        "uuid",
        "observed_on",
        "user_id",
        "user_login",
        "user_name",
        "quality_grade",
        "license",
        "url",
        "image_url",
        "latitude",
        "longitude",
        "scientific_name",
        "common_name",
        "iconic_taxon_name",
        "taxon_id",
        "Life Stage",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for number, (obs, photo, entry, stage) in enumerate(gen.lifestage_rows, start=200_000_001):
        login, name = gen.observers[obs.observer_id]
        writer.writerow(
            [
                number,
                obs.observation_uuid,
                obs.observed_on.isoformat(),
                obs.observer_id,
                login,
                name,
                obs.quality_grade,
                photo.license,
                f"https://www.inaturalist.org/observations/{number}",
                PHOTO_URL.format(photo_id=photo.photo_id, extension=photo.extension),
                obs.latitude,
                obs.longitude,
                entry.taxon.name,
                entry.taxon.names_en[0],
                "Insecta",
                entry.taxon.taxon_id,
                stage.capitalize(),
            ]
        )
    return out.getvalue()


def _render_batch(photos: list[Photo], long_side: int) -> list[tuple[str, bytes]]:
    """Some photos' (key in the bucket, bytes); each image depends only on its photo, so batches
    can run anywhere."""
    signatures: dict[tuple[int, int], dict] = {}
    rendered = []
    for photo in photos:
        if photo.signature not in signatures:
            signatures[photo.signature] = images.species_signature(*photo.signature)
        key = f"photos/{photo.photo_id}/{CURATE['photo_size']}.{photo.extension}"
        if photo.placeholder:
            rendered.append((key, images.PLACEHOLDER))
            continue
        original = (photo.height, photo.width) if photo.rotated else (photo.width, photo.height)
        width, height = images.medium_size(*original, long_side)
        pixels = images.render(
            signatures[photo.signature],
            width,
            height,
            photo.pixels_of or photo.photo_id,
            photo.stage,
        )
        if photo.rotated:  # the same picture, turned: a new file under the same photo id
            pixels = np.ascontiguousarray(np.rot90(pixels))
        quality = images.JPEG_QUALITY
        if photo.edit:
            pixels, quality = images.edit(pixels, photo.edit)
        rendered.append((key, images.encode(pixels, photo.true_format, quality)))
    return rendered


def write_images(pack: Path, photos: dict[int, Photo], long_side: int, workers: int) -> None:
    """The photos, in photo_id order, into a photo pack (contracts.SAMPLE_PHOTOS, or the files an
    earlier month had: contracts.sample_photos_as_of)."""
    ordered = [photos[k] for k in sorted(photos)]
    batches = [ordered[i : i + 1000] for i in range(0, len(ordered), 1000)]
    with (
        tqdm(total=len(ordered), desc=pack.name, unit="img", mininterval=2, file=sys.stderr) as bar,
        ProcessPoolExecutor(workers) as pool,
        packing(pack) as add,
    ):
        for rendered in pool.map(_render_batch, batches, [long_side] * len(batches)):
            for key, data in rendered:
                add(key, data)
            bar.update(len(rendered))


def generate(
    out: Path, settings: dict | None = None, with_images: bool = True, workers: int = 1
) -> dict:
    """Write the sample into `out` (whole or not at all): bucket/, the web export, planted.json.
    `settings`: config.yaml's `sample` section (the schema fills in what it leaves out)."""
    settings = sample_settings("sample", settings)
    seed, scale = settings["seed"], settings["scale"]
    months = [date.fromisoformat(month) for month in settings["months"]]
    if months[0] >= months[1]:
        raise ValueError(
            f"sample.months: expected two increasing snapshot dates, got {settings['months']}"
        )
    gen = Generator(seed, months, scale)
    first = gen.first_month()
    second = gen.second_month(first)
    with building(out) as staging:
        bucket = staging / contracts.SAMPLE_BUCKET
        (bucket / "metadata").mkdir(parents=True)
        for month in (first, second):
            texts = table_texts(month, random.Random(f"{seed}-{month.day}"))
            bundle = bundle_bytes(month.day, texts)
            (bucket / "metadata" / f"inaturalist-open-data-{month.day:%Y%m%d}.tar.gz").write_bytes(
                bundle
            )
        (bucket / "metadata" / "inaturalist-open-data-latest.tar.gz").write_bytes(bundle)
        for table, text in texts.items():  # the bucket root holds the newest month
            (bucket / f"{table}.csv.gz").write_bytes(gzip_bytes(text.encode()))
        (bucket / contracts.TAXONOMY_ARCHIVE).write_bytes(dwca_bytes(second))
        if with_images:
            deleted = set(gen.planted["deleted_photo_ids"])
            everything = {
                p.photo_id: p for p in first.photos + second.photos if p.photo_id not in deleted
            }
            write_images(
                bucket / contracts.SAMPLE_PHOTOS, everything, settings["image_size"], workers
            )
            changed = {gen.planted["rotated_photo"], gen.planted["placeholder_photo"]}
            write_images(  # month 1 served these photos' files as they were then
                bucket / contracts.sample_photos_as_of(first.day.isoformat()),
                {p.photo_id: p for p in first.photos if p.photo_id in changed},
                settings["image_size"],
                workers,
            )
        (staging / contracts.SAMPLE_LIFESTAGES).write_text(lifestages_csv(gen), encoding="utf-8")
        summary = {
            "seed": seed,
            "months": [m.isoformat() for m in months],
            "scale": scale,
            "photos_rows": {m.day.isoformat(): len(m.photos) for m in (first, second)},
            "observations_rows": {m.day.isoformat(): len(m.observations) for m in (first, second)},
            "species": {
                tier: sorted(e.taxon.taxon_id for e in gen.tree.species if e.tier == tier)
                for tier in ("head", "body", "unseen", "rare", "other")
            },
            "target_images": {str(e.taxon.taxon_id): e.target_images for e in gen.tree.species},
            "planted": gen.planted,
        }
        (staging / contracts.SAMPLE_PLANTED).write_text(
            json.dumps(summary, indent=1, sort_keys=True) + "\n"
        )
    return summary
