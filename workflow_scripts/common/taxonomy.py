"""The taxonomy every stage shares: the ranks of a curated row's lineage and the category rule.

A curated row names its taxon's ancestor at each rank of RANKS (a column each; empty where the
lineage has none). A taxon's category (config subsets.categories: name -> rank) is the configured
category whose name is the taxon's ancestor at that rank; a taxon under none of them is OTHER (the
subsets leave it out, the data card counts it, the iNat 2021 export names it). Categories must not
overlap (the subsets refuse a taxon in two); where they do, the first by name is taken.

The rule is written once, here: in Python (`category`) and as SQL generated from the same
definition (`category_sql`, `categories_sql`), as common.inat_format does for the value rules.
"""

from __future__ import annotations

from collections.abc import Mapping

from workflow_scripts.common.duck import quote

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
ABOVE_SPECIES = RANKS[:-1]  # a species' lineage: the ranks named before its epithet
OTHER = "other"  # the category of a taxon under none of the configured ones


def ranks_down_to(rank: str) -> tuple[str, ...]:
    """The ranks from kingdom down to `rank`: a lineage cut at that rank."""
    return RANKS[: RANKS.index(rank) + 1]


def column(rank: str, row: str = "") -> str:
    """A rank's column in SQL ("class" and "order" are keywords), of the table or struct `row`."""
    return f'{row + "." if row else ""}"{rank}"'


def lineage_key_sql(rank: str, row: str = "") -> str:
    """SQL for a taxon's lineage down to `rank` as one string (a genus: its lineage down to genus,
    so that two genera of one name in different families stay apart)."""
    return f"concat_ws(' ', {', '.join(column(r, row) for r in ranks_down_to(rank))})"


def categories_of(lineage: Mapping, categories: Mapping[str, str]) -> list[str]:
    """The configured categories a lineage (a mapping with the rank columns) is in, by name."""
    return sorted(name for name, rank in categories.items() if lineage.get(rank) == name)


def category(lineage: Mapping, categories: Mapping[str, str]) -> str:
    """A lineage's category: the first of categories_of, else OTHER."""
    return next(iter(categories_of(lineage, categories)), OTHER)


def categories_sql(categories: Mapping[str, str], row: str = "") -> str:
    """categories_of in SQL over the rank columns of `row`: a VARCHAR list, by name."""
    matches = [
        f"CASE WHEN {column(rank, row)} = {quote(name)} THEN {quote(name)} END"
        for name, rank in sorted(categories.items())
    ]
    return f"list_filter([{', '.join(matches)}]::VARCHAR[], c -> c IS NOT NULL)"


def category_sql(categories: Mapping[str, str], row: str = "") -> str:
    """category in SQL over the rank columns of `row`."""
    return f"coalesce(({categories_sql(categories, row)})[1], {quote(OTHER)})"


def rank_value_sql(rank: str, row: str) -> str:
    """SQL for the ancestor of `row` (a table or struct) at the rank named by the SQL `rank`."""
    cases = " ".join(f"WHEN '{r}' THEN {column(r, row)}" for r in RANKS)
    return f"CASE {rank} {cases} END"


def sql_macros(categories: Mapping[str, str]) -> list[str]:
    """DuckDB macros over a taxon's row (a table alias, read as a struct), for SQL files:
    rank_value(rank, t), categories_of(t) and genus_key(t)."""
    return [
        f"CREATE OR REPLACE MACRO rank_value(r, t) AS {rank_value_sql('r', 't')}",
        f"CREATE OR REPLACE MACRO categories_of(t) AS {categories_sql(categories, 't')}",
        f"CREATE OR REPLACE MACRO genus_key(t) AS {lineage_key_sql('genus', 't')}",
    ]
