-- Every taxon's ranks, resolved through taxa whatever intermediate ranks its lineage has.
-- ancestry lists ids from the root down to the PARENT, '/'-separated; the taxon itself is added.
-- Every ancestor is in taxa (ancestry.sql) unless its row was rejected: those are counted, and
-- the photos of a taxon with one are dropped (ancestor_rejected, or conflicting_taxon when the
-- ancestor's rows differed), never given a blank rank.
CREATE OR REPLACE TABLE lineage_steps AS
SELECT t.taxon_id, TRY_CAST(step.ancestor_id AS BIGINT) AS ancestor_id
FROM taxa AS t, unnest(string_split(t.ancestry, '/')) AS step(ancestor_id)
WHERE t.ancestry IS NOT NULL AND step.ancestor_id <> ''
UNION ALL
SELECT taxon_id, taxon_id FROM taxa;

CREATE OR REPLACE TABLE lineage AS
SELECT s.taxon_id,
       max(a.name) FILTER (WHERE a.rank = 'kingdom') AS kingdom,
       max(a.name) FILTER (WHERE a.rank = 'phylum') AS phylum,
       max(a.name) FILTER (WHERE a.rank = 'class') AS "class",
       max(a.name) FILTER (WHERE a.rank = 'order') AS "order",
       max(a.name) FILTER (WHERE a.rank = 'family') AS family,
       max(a.name) FILTER (WHERE a.rank = 'genus') AS genus,
       max(a.name) FILTER (WHERE a.rank = 'species') AS species,
       count(*) FILTER (WHERE a.taxon_id IS NULL) AS rejected_ancestors,
       count(*) FILTER (WHERE s.ancestor_id::VARCHAR IN (SELECT key FROM conflicting_keys_taxa))
           AS conflicting_ancestors
FROM lineage_steps AS s
LEFT JOIN taxa AS a ON a.taxon_id = s.ancestor_id
GROUP BY s.taxon_id;
