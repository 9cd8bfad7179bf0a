"""A realistic, deterministic taxonomy for the sample snapshot.

Life -> kingdoms -> ... -> species, with iNaturalist's real ids for the well-known taxa
(Animalia 1, Aves 3, Insecta 47158, ...), intermediate ranks that vary from lineage to lineage,
subspecies, varieties, hybrids, complexes, provisional names with quotes, non-ASCII names,
inactive taxa, and English/Spanish vernacular names (some taxa with several).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from workflow_scripts.common.inat_format import RANK_LEVELS

LIFE = 48460

# category -> (share of the sample's target species, English nouns, Spanish nouns)
CATEGORIES = {
    "Aves": (
        60,
        ["Warbler", "Finch", "Hawk", "Heron", "Owl", "Sparrow"],
        ["Curruca", "Pinzón", "Búho", "Garza"],
    ),
    "Insecta": (
        70,
        ["Beetle", "Moth", "Butterfly", "Bee", "Dragonfly", "Katydid"],
        ["Escarabajo", "Mariposa", "Abeja", "Libélula"],
    ),
    "Plantae": (
        75,
        ["Oak", "Fern", "Aster", "Sedge", "Lily", "Orchid"],
        ["Roble", "Helecho", "Margarita", "Lirio"],
    ),
    "Fungi": (
        35,
        ["Bolete", "Milkcap", "Bracket", "Puffball", "Cup"],
        ["Hongo", "Seta", "Bejín", "Oreja"],
    ),
    "Arachnida": (
        25,
        ["Orbweaver", "Jumping Spider", "Harvestman", "Tick"],
        ["Araña", "Opilión", "Garrapata"],
    ),
    "Reptilia": (
        25,
        ["Skink", "Gecko", "Snake", "Turtle"],
        ["Eslizón", "Geco", "Culebra", "Tortuga"],
    ),
    "Mollusca": (20, ["Snail", "Slug", "Mussel"], ["Caracol", "Babosa", "Mejillón"]),
}
# Lineages outside the seven categories (filtered out downstream, present as in real data).
OTHER_SPECIES = {"Amphibia": 6, "Mammalia": 6, "Protozoa": 4, "Chromista": 4}

ADJECTIVES = [
    "Common",
    "Spotted",
    "Northern",
    "Lesser",
    "Golden",
    "Pale",
    "Dusky",
    "Crested",
    "Banded",
    "Ruby-throated",
    "Western",
    "Giant",
    "Wilson's",
    "Hooded",
    "Sooty",
]
ADJETIVOS = ["común", "moteado", "del Norte", "menor", "dorado", "pálido", "de Núñez", "crestado"]
SYLLABLES = [
    "ca",
    "lo",
    "mi",
    "ra",
    "te",
    "phi",
    "do",
    "ni",
    "gra",
    "bo",
    "cty",
    "le",
    "sa",
    "tho",
    "ri",
    "mo",
    "xe",
    "pu",
    "ga",
    "ve",
    "chlo",
    "ze",
    "ly",
    "ta",
    "po",
    "nu",
]
GENUS_ENDINGS = ["us", "a", "ia", "ops", "ella", "is", "on"]
EPITHET_ENDINGS = ["us", "a", "is", "ensis", "ii", "ata", "oides", "um"]
# An epithet several unrelated genera share: grouping species by epithet alone (a bug in the
# authors' code) would merge them.
SHARED_EPITHET = "vulgaris"


@dataclass
class Taxon:
    taxon_id: int
    rank: str
    name: str
    parent_id: int | None
    ancestry: str
    active: bool = True
    category: str | None = None
    kingdom: str | None = None
    names_en: list[str] = field(default_factory=list)
    names_es: list[str] = field(default_factory=list)

    @property
    def rank_level(self) -> str:
        level = RANK_LEVELS[self.rank]
        return str(int(level)) if float(level).is_integer() else str(level)


@dataclass
class Species:
    """A rank-species taxon with what the generator needs to make its observations."""

    taxon: Taxon
    category: str | None  # None for lineages outside the seven categories
    genus: Taxon
    infraspecific: list[Taxon] = field(default_factory=list)
    target_images: int = 0  # research-grade, kept-license, pre-cutoff photos to generate
    tier: str = ""


class TaxonomyBuilder:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.taxa: dict[int, Taxon] = {}
        self.next_id = 1_000_001
        self.used_names: set[str] = set()
        self.used_common: set[str] = set()
        self.species: list[Species] = []

    # -- primitives -------------------------------------------------------------------------
    def add(
        self,
        rank: str,
        name: str,
        parent: Taxon | None,
        taxon_id: int | None = None,
        active: bool = True,
    ) -> Taxon:
        if taxon_id is None:
            taxon_id, self.next_id = self.next_id, self.next_id + self.rng.randint(1, 40)
        ancestry = (
            ""
            if parent is None
            else "/".join(filter(None, [parent.ancestry, str(parent.taxon_id)]))
        )
        taxon = Taxon(
            taxon_id,
            rank,
            name,
            None if parent is None else parent.taxon_id,
            ancestry,
            active=active,
            category=parent.category if parent else None,
            kingdom=parent.kingdom if parent else None,
        )
        self.taxa[taxon_id] = taxon
        self.used_names.add(name)
        return taxon

    def latin(self, syllables: int, endings: list[str], capital: bool) -> str:
        while True:
            word = "".join(self.rng.choice(SYLLABLES) for _ in range(syllables)) + self.rng.choice(
                endings
            )
            word = word.capitalize() if capital else word
            if word not in self.used_names and len(word) > 4:
                return word

    def group_name(self, suffix: str) -> str:
        return self.latin(2, [suffix], capital=True)

    def common_names(self, taxon: Taxon, nouns_en: list[str], nouns_es: list[str]) -> None:
        """Give a species 0-3 English names and maybe a Spanish one (deterministic)."""
        roll = self.rng.random()
        if roll < 0.1:
            return  # no common name at all: captions fall back to the scientific name
        count = 1 + (roll > 0.85) + (roll > 0.95)
        for _ in range(count):
            for _attempt in range(50):
                candidate = f"{self.rng.choice(ADJECTIVES)} {self.rng.choice(nouns_en)}"
                if taxon.names_en:
                    candidate = (
                        f"{self.rng.choice(['Eastern', 'Mountain', 'Swamp', 'Dwarf'])} {candidate}"
                    )
                if candidate not in self.used_common:
                    break
                candidate = f"{candidate} {self.latin(1, ['o', 'a'], capital=True)}"
            self.used_common.add(candidate)
            taxon.names_en.append(candidate)
        if self.rng.random() < 0.6:
            taxon.names_es.append(f"{self.rng.choice(nouns_es)} {self.rng.choice(ADJETIVOS)}")

    # -- lineages ---------------------------------------------------------------------------
    def chain(self, parent: Taxon, ranks: list[tuple[str, str, float]]) -> Taxon:
        """Add optional intermediate ranks below `parent`: (rank, suffix, probability)."""
        for rank, suffix, probability in ranks:
            if self.rng.random() < probability:
                parent = self.add(rank, self.group_name(suffix), parent)
        return parent

    def genus_with_species(
        self,
        parent: Taxon,
        n_species: int,
        category: str | None,
        nouns: tuple[list[str], list[str]],
        quirks: set[str],
    ) -> None:
        genus = self.add("genus", self.latin(2, GENUS_ENDINGS, capital=True), parent)
        holder = genus
        if "subgenus" in quirks and self.rng.random() < 0.4:
            holder = self.add("subgenus", self.latin(2, GENUS_ENDINGS, capital=True), genus)
        if "section" in quirks and self.rng.random() < 0.4:
            holder = self.add("section", self.latin(2, GENUS_ENDINGS, capital=True), genus)
        for i in range(n_species):
            species_parent = holder
            if "complex" in quirks and i == 0 and n_species >= 2 and self.rng.random() < 0.5:
                epithet = self.latin(2, EPITHET_ENDINGS, capital=False)
                species_parent = self.add("complex", f"{genus.name} {epithet} complex", holder)
            if "provisional" in quirks and self.rng.random() < 0.08:
                epithet = f'"sp-IN{self.rng.randint(10, 99)}"'  # iNat's provisional fungus names
            else:
                epithet = self.latin(2, EPITHET_ENDINGS, capital=False)
            taxon = self.add("species", f"{genus.name} {epithet}", species_parent)
            self.common_names(taxon, *nouns)
            entry = Species(taxon, category, genus)
            infra_rank = "variety" if taxon.kingdom == "Plantae" else "subspecies"
            if self.rng.random() < 0.12 and '"' not in epithet:
                for _ in range(self.rng.randint(1, 2)):
                    entry.infraspecific.append(
                        self.add(
                            infra_rank,
                            f"{taxon.name} {self.latin(2, EPITHET_ENDINGS, capital=False)}",
                            taxon,
                        )
                    )
            self.species.append(entry)
        if "hybrid" in quirks and n_species >= 2 and self.rng.random() < 0.3:
            epithet = self.latin(2, EPITHET_ENDINGS, capital=False)
            self.add("hybrid", f"{genus.name} × {epithet}", genus)

    def populate(
        self,
        parent: Taxon,
        n_species: int,
        category: str | None,
        levels: list[tuple[str, str, float]],
        family_ranks: list[tuple[str, str, float]],
        quirks: set[str],
        nouns=None,
    ) -> None:
        """Orders -> families -> genera -> species below `parent` until n_species exist."""
        nouns = nouns or (["Critter"], ["Bicho"])
        remaining = n_species
        while remaining > 0:
            order = self.add("order", self.group_name(levels[0][1]), parent)
            order_sub = self.chain(order, levels[1:])
            for _family in range(self.rng.randint(1, 3)):
                family = self.add(
                    "family", self.group_name("idae" if "animal" in quirks else "aceae"), order_sub
                )
                below = self.chain(family, family_ranks)
                for _genus in range(self.rng.randint(1, 3)):
                    k = min(remaining, self.rng.randint(1, 4))
                    if k <= 0:
                        return
                    self.genus_with_species(below, k, category, nouns, quirks)
                    remaining -= k


def build_taxonomy(rng: random.Random, scale: float = 1.0) -> TaxonomyBuilder:
    """The whole tree. `scale` multiplies the species count per lineage (1.0 = ~330 species)."""
    b = TaxonomyBuilder(rng)
    life = b.add("stateofmatter", "Life", None, taxon_id=LIFE)

    def kingdom(name: str, taxon_id: int) -> Taxon:
        taxon = b.add("kingdom", name, life, taxon_id=taxon_id)
        taxon.kingdom = name
        return taxon

    def n(category: str) -> int:
        count = CATEGORIES[category][0] if category in CATEGORIES else OTHER_SPECIES[category]
        return max(2, round(count * scale))

    def cat(taxon: Taxon, category: str) -> Taxon:
        taxon.category = category
        return taxon

    def nouns(category: str):
        return CATEGORIES[category][1], CATEGORIES[category][2]

    animalia, plantae, fungi = (
        kingdom("Animalia", 1),
        kingdom("Plantae", 47126),
        kingdom("Fungi", 47170),
    )
    protozoa, chromista = kingdom("Protozoa", 47686), kingdom("Chromista", 48222)
    animal = {"animal"}

    chordata = b.add("phylum", "Chordata", animalia, taxon_id=2)
    vertebrata = b.add("subphylum", "Vertebrata", chordata, taxon_id=355675)
    aves = cat(b.add("class", "Aves", vertebrata, taxon_id=3), "Aves")
    b.populate(
        aves,
        n("Aves"),
        "Aves",
        [("order", "iformes", 1)],
        [("subfamily", "inae", 0.2)],
        animal | {"complex"},
        nouns("Aves"),
    )
    reptilia = cat(b.add("class", "Reptilia", vertebrata, taxon_id=26036), "Reptilia")
    b.populate(
        reptilia,
        n("Reptilia"),
        "Reptilia",
        [("order", "ata", 1), ("suborder", "ia", 0.7)],
        [("subfamily", "inae", 0.3)],
        animal | {"complex"},
        nouns("Reptilia"),
    )
    amphibia = b.add("class", "Amphibia", vertebrata, taxon_id=20978)
    b.populate(amphibia, n("Amphibia"), None, [("order", "ura", 1)], [], animal)
    mammalia = b.add("class", "Mammalia", vertebrata, taxon_id=40151)
    b.populate(
        mammalia, n("Mammalia"), None, [("order", "ia", 1)], [("subfamily", "inae", 0.3)], animal
    )

    arthropoda = b.add("phylum", "Arthropoda", animalia, taxon_id=47120)
    chelicerata = b.add("subphylum", "Chelicerata", arthropoda, taxon_id=245097)
    arachnida = cat(b.add("class", "Arachnida", chelicerata, taxon_id=47119), "Arachnida")
    b.populate(
        arachnida,
        n("Arachnida"),
        "Arachnida",
        [("order", "ae", 1), ("infraorder", "omorphae", 0.6)],
        [],
        animal,
        nouns("Arachnida"),
    )
    hexapoda = b.add("subphylum", "Hexapoda", arthropoda, taxon_id=372739)
    insecta = cat(b.add("class", "Insecta", hexapoda, taxon_id=47158), "Insecta")
    pterygota = b.add("subclass", "Pterygota", insecta, taxon_id=184884)
    b.populate(
        pterygota,
        n("Insecta"),
        "Insecta",
        [("order", "optera", 1), ("suborder", "ina", 0.5), ("superfamily", "oidea", 0.7)],
        [("subfamily", "inae", 0.6), ("tribe", "ini", 0.5), ("subtribe", "ina", 0.15)],
        animal | {"subgenus", "complex"},
        nouns("Insecta"),
    )

    mollusca = cat(b.add("phylum", "Mollusca", animalia, taxon_id=47115), "Mollusca")
    gastropoda = b.add("class", "Gastropoda", mollusca, taxon_id=47114)
    b.populate(
        gastropoda,
        n("Mollusca") - 4,
        "Mollusca",
        [("order", "ida", 1), ("superfamily", "oidea", 0.6)],
        [],
        animal | {"complex"},
        nouns("Mollusca"),
    )
    bivalvia = b.add("class", "Bivalvia", mollusca, taxon_id=47584)
    b.populate(bivalvia, 4, "Mollusca", [("order", "ida", 1)], [], animal, nouns("Mollusca"))

    plantae.category = "Plantae"
    tracheophyta = b.add("phylum", "Tracheophyta", plantae, taxon_id=211194)
    angiospermae = b.add("subphylum", "Angiospermae", tracheophyta, taxon_id=47125)
    for class_name, class_id, share in (("Magnoliopsida", 47124, 0.7), ("Liliopsida", 47163, 0.2)):
        klass = b.add("class", class_name, angiospermae, taxon_id=class_id)
        b.populate(
            klass,
            round(n("Plantae") * share),
            "Plantae",
            [("order", "ales", 1)],
            [("subfamily", "oideae", 0.5), ("tribe", "eae", 0.4)],
            {"section", "hybrid"},
            nouns("Plantae"),
        )
    ferns = b.add("class", "Polypodiopsida", tracheophyta, taxon_id=121943)
    b.populate(
        ferns,
        n("Plantae") - round(n("Plantae") * 0.7) - round(n("Plantae") * 0.2),
        "Plantae",
        [("order", "ales", 1)],
        [],
        set(),
        nouns("Plantae"),
    )

    fungi.category = "Fungi"
    basidio = b.add("phylum", "Basidiomycota", fungi, taxon_id=47169)
    agaricomycotina = b.add("subphylum", "Agaricomycotina", basidio, taxon_id=492000)
    agaricomycetes = b.add("class", "Agaricomycetes", agaricomycotina, taxon_id=50814)
    b.populate(
        agaricomycetes,
        n("Fungi") - 5,
        "Fungi",
        [("order", "ales", 1)],
        [],
        {"provisional"},
        nouns("Fungi"),
    )
    ascomycota = b.add("phylum", "Ascomycota", fungi, taxon_id=48250)
    pezizomycetes = b.add("class", "Pezizomycetes", ascomycota, taxon_id=54743)
    b.populate(pezizomycetes, 5, "Fungi", [("order", "ales", 1)], [], set(), nouns("Fungi"))

    mycetozoa = b.add("phylum", "Mycetozoa", protozoa, taxon_id=47685)
    myxo = b.add("class", "Myxomycetes", mycetozoa, taxon_id=54746)
    b.populate(myxo, n("Protozoa"), None, [("order", "ales", 1)], [], set())
    ochrophyta = b.add("phylum", "Ochrophyta", chromista, taxon_id=48221)
    phaeo = b.add("class", "Phaeophyceae", ochrophyta, taxon_id=48223)
    b.populate(phaeo, n("Chromista"), None, [("order", "ales", 1)], [], set())

    # Unrelated species in three categories that share an epithet.
    for category in ("Aves", "Insecta", "Plantae"):
        entry = next(
            s
            for s in b.species
            if s.category == category and not s.infraspecific and '"' not in s.taxon.name
        )
        entry.taxon.name = f"{entry.genus.name} {SHARED_EPITHET}"
    # Inactive taxa: old synonyms still referenced by observations.
    for entry in rng.sample(b.species, 4):
        b.add(
            "species",
            f"{entry.genus.name} {b.latin(2, EPITHET_ENDINGS, capital=False)}",
            b.taxa[entry.taxon.parent_id],
            active=False,
        )
    return b
