-- What changed between two monthly snapshots. Inputs: the raw tables of each month in the attached
-- databases prev and cur (photos, observations, taxa), views {previous,current}_curated,
-- {previous,current}_species (species.parquet) and {previous,current}_benchmarks(benchmark,
-- photo_id, species_key). Every table is sorted when written (data.py).

-- Images of each species (species-rank taxa of the curated table) before and after.
CREATE OR REPLACE TABLE species_images AS
SELECT species_key, coalesce(c.category, '(no category)') AS category,
       coalesce(p.images, 0) AS previous_images, coalesce(n.images, 0) AS current_images,
       CASE WHEN p.images IS NULL THEN 'added' WHEN n.images IS NULL THEN 'removed'
            WHEN p.images <> n.images THEN 'changed' ELSE 'same' END AS change
FROM (SELECT taxonomic_name AS species_key, count(*) AS images FROM previous_curated
      WHERE taxon_rank = 'species' GROUP BY 1) AS p
FULL JOIN (SELECT taxonomic_name AS species_key, count(*) AS images FROM current_curated
           WHERE taxon_rank = 'species' GROUP BY 1) AS n USING (species_key)
LEFT JOIN (SELECT species_key, max(category) AS category
           FROM (SELECT species_key, category FROM previous_species
                 UNION ALL SELECT species_key, category FROM current_species) GROUP BY 1) AS c USING (species_key);

CREATE OR REPLACE TABLE category_images AS
SELECT category, sum(previous_images)::BIGINT AS previous_images, sum(current_images)::BIGINT AS current_images,
       count(*) FILTER (WHERE previous_images > 0) AS previous_species,
       count(*) FILTER (WHERE current_images > 0) AS current_species
FROM species_images GROUP BY 1;

-- Taxa active before and inactive now, and where their observations went: the taxon each of them
-- points at now (the same inactive taxon when nobody re-identified it, none when it was deleted).
CREATE OR REPLACE TABLE inactivated_taxa AS
SELECT t.taxon_id, t.name, t.rank, n.taxon_id AS replaced_by_id, nt.name AS replaced_by,
       count(o.observation_uuid) AS observations
FROM cur.taxa AS t
JOIN prev.taxa AS p ON p.taxon_id = t.taxon_id AND p.active AND NOT t.active
LEFT JOIN prev.observations AS o ON o.taxon_id = t.taxon_id
LEFT JOIN cur.observations AS n ON n.observation_uuid = o.observation_uuid
LEFT JOIN cur.taxa AS nt ON nt.taxon_id = n.taxon_id
GROUP BY ALL;

-- Photos in the earlier table whose id is gone from the later one; in_dataset: it was curated.
CREATE OR REPLACE TABLE deleted_photos AS
SELECT p.photo_id, p.observation_uuid, p.license, c.taxonomic_name AS species_key,
       c.photo_id IS NOT NULL AS in_dataset
FROM (SELECT * FROM prev.photos ANTI JOIN cur.photos USING (photo_id)) AS p
LEFT JOIN (SELECT DISTINCT photo_id, observation_uuid, taxonomic_name FROM previous_curated) AS c
    ON c.photo_id = p.photo_id AND c.observation_uuid = p.observation_uuid;

-- The same photo of the same observation under another license, and what that did to the dataset.
CREATE OR REPLACE TABLE license_changes AS
SELECT p.photo_id, p.observation_uuid, p.license AS previous_license, n.license AS current_license,
       CASE WHEN pc.photo_id IS NULL AND cc.photo_id IS NOT NULL THEN 'entered the dataset'
            WHEN pc.photo_id IS NOT NULL AND cc.photo_id IS NULL THEN 'left the dataset'
            WHEN pc.photo_id IS NOT NULL THEN 'stayed in the dataset'
            ELSE 'outside the dataset' END AS effect
FROM prev.photos AS p
JOIN cur.photos AS n ON n.photo_id = p.photo_id AND n.observation_uuid = p.observation_uuid
LEFT JOIN (SELECT DISTINCT photo_id, observation_uuid FROM previous_curated) AS pc
    ON pc.photo_id = p.photo_id AND pc.observation_uuid = p.observation_uuid
LEFT JOIN (SELECT DISTINCT photo_id, observation_uuid FROM current_curated) AS cc
    ON cc.photo_id = p.photo_id AND cc.observation_uuid = p.observation_uuid
WHERE p.license IS DISTINCT FROM n.license;

-- Each benchmark's species, with their images before and after.
CREATE OR REPLACE TABLE benchmark_species AS
SELECT benchmark, species_key,
       count(*) FILTER (WHERE side = 'previous') AS previous_images,
       count(*) FILTER (WHERE side = 'current') AS current_images,
       CASE WHEN count(*) FILTER (WHERE side = 'previous') = 0 THEN 'added'
            WHEN count(*) FILTER (WHERE side = 'current') = 0 THEN 'removed'
            WHEN count(*) FILTER (WHERE side = 'previous') <> count(*) FILTER (WHERE side = 'current') THEN 'changed'
            ELSE 'same' END AS change
FROM (SELECT 'previous' AS side, * FROM previous_benchmarks UNION ALL SELECT 'current' AS side, * FROM current_benchmarks)
GROUP BY ALL;

-- Each benchmark's photos: how many, and how many entered or left it.
CREATE OR REPLACE TABLE benchmark_photos AS
SELECT benchmark, count(p.photo_id) AS previous_images, count(n.photo_id) AS current_images,
       count(*) FILTER (WHERE p.photo_id IS NULL) AS entered, count(*) FILTER (WHERE n.photo_id IS NULL) AS "left"
FROM previous_benchmarks AS p FULL JOIN current_benchmarks AS n USING (benchmark, photo_id)
GROUP BY 1;
