"""Captions (every type, the fallbacks) and sample orders (local, semi-global, batch mixing)."""

from __future__ import annotations

import hashlib

import numpy as np

from workflow_scripts.common.captions import CAPTION_TYPES, captions
from workflow_scripts.images.shuffle import (
    batch_mixing,
    local_order,
    semi_global_order,
    shuffle_quality,
)

ROW = {
    "kingdom": "Animalia",
    "phylum": "Chordata",
    "class": "Aves",
    "order": "Anseriformes",
    "family": "Anatidae",
    "genus": "Anas",
    "species": "Anas platyrhynchos",
    "scientific_name": "Anas platyrhynchos domesticus",
    "common_name": "Mallard",
}


def test_every_caption_type_as_the_authors_write_it():
    text = captions(ROW)
    assert tuple(text) == CAPTION_TYPES
    taxonomic = "Animalia Chordata Aves Anseriformes Anatidae Anas platyrhynchos"
    tagged = (
        "kingdom Animalia phylum Chordata class Aves order Anseriformes family Anatidae genus Anas "
        "species platyrhynchos"
    )
    assert text == {
        "com": "a photo of Mallard.",
        "common_name": "Mallard.",
        "sci": "a photo of Anas platyrhynchos.",
        "scientific_name": "Anas platyrhynchos.",
        "sci_com": "a photo of Anas platyrhynchos with common name Mallard.",
        "taxon": f"a photo of {taxonomic}.",
        "taxonomic_name": f"{taxonomic}.",
        "taxonTag": f"a photo of {tagged}.",
        "taxon_com": f"a photo of {taxonomic} with common name Mallard.",
        "taxonTag_com": f"a photo of {tagged} with common name Mallard.",
    }


def test_missing_common_name_and_rank_fall_back():
    text = captions({**ROW, "common_name": None, "family": None})
    assert text["com"] == "a photo of Anas platyrhynchos."
    assert text["taxonomic_name"] == "Animalia Chordata Aves Anseriformes Anas platyrhynchos."
    assert "family" not in text["taxonTag"]


def test_local_order_shuffles_inside_windows_only():
    order = local_order(10, 4, seed=1)
    assert sorted(order) == list(range(10)) and list(order) != list(range(10))
    assert [sorted(order[i : i + 4]) for i in (0, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]] and sorted(
        order[8:]
    ) == [8, 9]


def test_semi_global_order_moves_whole_segments_of_one_window():
    order = semi_global_order(1000, 100, 10, seed=7)
    assert sorted(order) == list(range(1000))
    segments = order.reshape(100, 10)
    assert all(
        len({row // 100 for row in segment}) == 1 for segment in segments
    )  # a segment stays inside its window
    assert len({segment[0] // 100 for segment in segments[:10]}) > 3  # from many windows
    digest = hashlib.sha256(order.astype("<i8").tobytes()).hexdigest()
    assert (
        digest
        == hashlib.sha256(
            semi_global_order(1000, 100, 10, seed=7).astype("<i8").tobytes()
        ).hexdigest()
    )
    assert not np.array_equal(order, semi_global_order(1000, 100, 10, seed=8))


def test_batch_mixing_on_a_known_order():
    species = np.array([1, 1, 1, 2, 3, 3, 4, 5, 9])
    distinct, largest = batch_mixing(species, 4)
    assert list(distinct) == [2, 3] and list(largest) == [
        0.75,
        0.5,
    ]  # the last, partial batch is left out


def test_semi_global_mixes_species_better_than_local():
    species = np.repeat(np.arange(50), 40)  # species order, as the rows arrive
    local = batch_mixing(species[local_order(len(species), 200, seed=3)], 32)
    semi = batch_mixing(species[semi_global_order(len(species), 200, 8, seed=3)], 32)
    assert semi[0].mean() > 2 * local[0].mean() and semi[1].mean() < local[1].mean()


def test_shuffle_quality_local_keeps_one_species_per_batch_semi_global_mixes():
    species = np.repeat(np.arange(4), 25)  # species order, one species per chunk of 25
    quality = shuffle_quality(species, [5, 50], window_size=25, segment_size=1, seed=0).set_index(
        ["order", "batch_size"]
    )
    assert list(
        quality.loc[("local", 5)][["batches", "distinct_species_mean", "largest_share_max"]]
    ) == [20, 1, 1.0]
    assert quality.loc[("local", 50), "distinct_species_min"] == 2  # a batch spans two chunks
    assert quality.loc[("semi_global", 5), "distinct_species_mean"] > 2
    assert quality.loc[("semi_global", 50), "largest_share_max"] < 0.5
