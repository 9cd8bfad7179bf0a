-- Photos in both this snapshot's and the previous one's curated table whose subset or split
-- changed, each with the reason. Inputs: views {current,previous}_curated,
-- {current,previous}_placements(photo_id, subset, split), {current,previous}_species (species.parquet).
CREATE OR REPLACE TABLE moved AS
WITH now AS (
    SELECT c.photo_id, c.taxonomic_name AS species_key, p.subset, p.split
    FROM current_curated AS c LEFT JOIN current_placements AS p USING (photo_id)
), before AS (
    SELECT c.photo_id, c.taxonomic_name AS species_key, p.subset, p.split
    FROM previous_curated AS c LEFT JOIN previous_placements AS p USING (photo_id)
)
SELECT n.photo_id, b.subset AS previous_subset, b.split AS previous_split, n.subset, n.split,
       n.species_key AS species,
       CASE WHEN b.species_key IS DISTINCT FROM n.species_key THEN 're-identified (' || coalesce(b.species_key, 'none')
                                                                 || ' -> ' || coalesce(n.species_key, 'none') || ')'
            WHEN coalesce(ps.status, 'none') <> coalesce(s.status, 'none')
                THEN 'species crossed a threshold (' || coalesce(ps.status, 'none') || ' -> '
                     || coalesce(s.status, 'none') || ')'
            WHEN ps.images IS DISTINCT FROM s.images
                THEN 'capped choice moved as the species changed size (' || ps.images || ' -> ' || s.images || ' images)'
            ELSE 'unexplained'
       END AS reason
FROM now AS n
JOIN before AS b USING (photo_id)
LEFT JOIN current_species AS s ON s.species_key = n.species_key
LEFT JOIN previous_species AS ps ON ps.species_key = n.species_key
WHERE b.subset IS DISTINCT FROM n.subset OR b.split IS DISTINCT FROM n.split;
