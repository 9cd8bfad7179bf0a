-- Ancestry links between taxa that curation refuses (the format rule on each id is
-- inat_format.VALUE_RULES'): a taxon listed among its own ancestors, an ancestor that taxa does not
-- hold (and that no rejected row was: those taxa's photos are dropped as ancestor_rejected), and a
-- cycle: an ancestor listing the taxon among its own ancestors (e.g. a genus under its own
-- species), or a longer loop of parents (each taxon's parent is the last id of its ancestry).
-- One problem per taxa row (the first in text order), for rejects.csv.
CREATE OR REPLACE TEMP TABLE ancestry_links AS
SELECT t.rowid AS taxon_row, t.taxon_id, step.ancestor_id::BIGINT AS ancestor_id
FROM taxa AS t, unnest(string_split(t.ancestry, '/')) AS step(ancestor_id)
WHERE t.ancestry IS NOT NULL;

CREATE OR REPLACE TEMP TABLE parent_links AS
SELECT rowid AS taxon_row, taxon_id, string_split(ancestry, '/')[-1]::BIGINT AS parent_id
FROM taxa WHERE ancestry IS NOT NULL;

-- Taxa whose parents lead to the root or out of taxa: one step of parents per iteration, so
-- ~40 iterations over the ~1.5 M taxa. Whoever is left is on a loop of parents or under one.
CREATE OR REPLACE TEMP TABLE grounded AS
WITH RECURSIVE reached(taxon_id) AS (
    SELECT taxon_id FROM taxa WHERE ancestry IS NULL
    UNION
    SELECT taxon_id FROM parent_links AS l WHERE NOT EXISTS (SELECT 1 FROM taxa AS a WHERE a.taxon_id = l.parent_id)
    UNION
    SELECT l.taxon_id FROM parent_links AS l JOIN reached AS r ON l.parent_id = r.taxon_id)
SELECT taxon_id FROM reached;

-- Walk parents from each left-over taxon (none in a sound month); UNION ends a walk where a taxon
-- repeats. A taxon is on a loop when its walk comes back to it, after as many taxa as the loop has.
CREATE OR REPLACE TEMP TABLE parent_loops AS
WITH RECURSIVE loose AS (
    SELECT * FROM parent_links AS l
    WHERE NOT EXISTS (SELECT 1 FROM grounded AS g WHERE g.taxon_id = l.taxon_id) AND parent_id <> taxon_id),
walk(start_row, start_id, at_id) AS (
    SELECT taxon_row, taxon_id, parent_id FROM loose
    UNION
    SELECT w.start_row, w.start_id, l.parent_id FROM walk AS w JOIN loose AS l ON l.taxon_id = w.at_id)
SELECT start_row AS taxon_row, start_id AS taxon_id, count(*) AS steps
FROM walk GROUP BY ALL HAVING bool_or(at_id = start_id);

CREATE OR REPLACE TEMP TABLE ancestry_problems AS
SELECT taxon_row, min(problem) AS problem FROM (
    SELECT taxon_row, 'ancestry lists the taxon itself (' || taxon_id || ')' AS problem
    FROM ancestry_links WHERE ancestor_id = taxon_id
    UNION ALL
    SELECT taxon_row, 'ancestry lists ' || ancestor_id || ', which taxa does not hold'
    FROM ancestry_links AS l
    WHERE NOT EXISTS (SELECT 1 FROM taxa AS a WHERE a.taxon_id = l.ancestor_id)
      AND NOT EXISTS (SELECT 1 FROM rejected_keys_taxa AS r WHERE r.key = l.ancestor_id::VARCHAR)
    UNION ALL
    SELECT l.taxon_row, 'ancestry cycle: ' || l.ancestor_id || ' lists ' || l.taxon_id || ' among its ancestors'
    FROM ancestry_links AS l
    JOIN ancestry_links AS back ON back.taxon_id = l.ancestor_id AND back.ancestor_id = l.taxon_id
    WHERE l.ancestor_id <> l.taxon_id
    UNION ALL
    SELECT taxon_row, 'ancestry cycle: following parents from ' || taxon_id || ' comes back to it after '
                      || steps || ' steps'
    FROM parent_loops)
GROUP BY taxon_row;
