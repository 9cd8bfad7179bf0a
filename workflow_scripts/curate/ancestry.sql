-- Ancestry links between taxa that curation refuses (the format rule on each id is
-- inat_format.VALUE_RULES'): a taxon listed among its own ancestors, an ancestor that taxa does not
-- hold (and that no rejected row was: those taxa's photos are dropped as ancestor_rejected), and a
-- cycle (an ancestor listing the taxon among its own ancestors, e.g. a genus under its own species).
-- One problem per taxa row (the first in text order), for rejects.csv.
CREATE OR REPLACE TEMP TABLE ancestry_links AS
SELECT t.rowid AS taxon_row, t.taxon_id, step.ancestor_id::BIGINT AS ancestor_id
FROM taxa AS t, unnest(string_split(t.ancestry, '/')) AS step(ancestor_id)
WHERE t.ancestry IS NOT NULL;

CREATE OR REPLACE TEMP TABLE ancestry_problems AS
SELECT taxon_row, min(problem) AS problem FROM (
    SELECT taxon_row, 'ancestry lists the taxon itself (' || taxon_id || ')' AS problem
    FROM ancestry_links WHERE ancestor_id = taxon_id
    UNION ALL
    SELECT taxon_row, 'ancestry lists ' || ancestor_id || ', which taxa does not hold'
    FROM ancestry_links AS l
    WHERE NOT EXISTS (SELECT 1 FROM taxa AS a WHERE a.taxon_id = l.ancestor_id)
      AND ancestor_id::VARCHAR NOT IN (SELECT key FROM rejected_keys_taxa)
    UNION ALL
    SELECT l.taxon_row, 'ancestry cycle: ' || l.ancestor_id || ' lists ' || l.taxon_id || ' among its ancestors'
    FROM ancestry_links AS l
    JOIN ancestry_links AS back ON back.taxon_id = l.ancestor_id AND back.ancestor_id = l.taxon_id
    WHERE l.ancestor_id <> l.taxon_id)
GROUP BY taxon_row;
