-- BioTrove curation (paper section 3, appendix A.5): every photo row gets exactly one fate,
-- kept or a drop reason, so that photos_in = photos_out + sum(dropped).
-- Parameters: $quality_grades, $kingdoms, $licenses (lists), $url_prefix, $photo_size, $snapshot.

-- A repeated observation_uuid would multiply its photos in the join: keep one, deterministically.
CREATE OR REPLACE TABLE observations_unique AS
SELECT * FROM observations
QUALIFY row_number() OVER (PARTITION BY observation_uuid
                           ORDER BY taxon_id, quality_grade, observed_on, latitude, longitude) = 1;

CREATE OR REPLACE TABLE taxa_unique AS
SELECT * FROM taxa QUALIFY row_number() OVER (PARTITION BY taxon_id ORDER BY active DESC, name) = 1;

CREATE OR REPLACE TABLE photo_rows AS
SELECT p.photo_id, p.photo_uuid, p.observation_uuid, p.extension, p.license, p.width, p.height, p.position,
       o.taxon_id, o.quality_grade, o.observed_on, o.latitude, o.longitude, o.positional_accuracy,
       o.anomaly_score, t.rank AS taxon_rank, t.name AS scientific_name,
       l.kingdom, l.phylum, l."class", l."order", l.family, l.genus, l.species, l.unresolved_ancestors,
       CASE
           WHEN o.observation_uuid IS NULL THEN 'observation_missing'
           WHEN NOT coalesce(list_contains($quality_grades, o.quality_grade), false) THEN 'quality_grade'
           WHEN o.taxon_id IS NULL THEN 'no_taxon'
           WHEN t.taxon_id IS NULL THEN 'taxon_missing_from_taxa'
           WHEN NOT coalesce(t.active, false) THEN 'taxon_inactive'
           WHEN NOT coalesce(list_contains($kingdoms, l.kingdom), false) THEN 'kingdom'
           WHEN NOT coalesce(list_contains($licenses, p.license), false) THEN 'license'
       END AS drop_reason
FROM photos AS p
LEFT JOIN observations_unique AS o ON o.observation_uuid = p.observation_uuid
LEFT JOIN taxa_unique AS t ON t.taxon_id = o.taxon_id
LEFT JOIN lineage AS l ON l.taxon_id = o.taxon_id;

-- A photo attached to several kept observations: one row if they agree on the taxon (the
-- smallest observation_uuid), none if they disagree (conflicting labels). Only those photos
-- (about 0.1%) need a decision, so it is made on them alone. The order is total over what the
-- output shows, so whichever of two identical rows is kept, the bytes are the same.
CREATE OR REPLACE TABLE shared_photo_fates AS
SELECT rowid AS row_id,
       CASE WHEN min(taxon_id) OVER same_photo <> max(taxon_id) OVER same_photo THEN 'conflicting_labels'
            WHEN row_number() OVER (PARTITION BY photo_id ORDER BY observation_uuid, photo_uuid, position, license,
                                    extension, width, height) > 1 THEN 'duplicate_photo'
       END AS fate
FROM photo_rows
WHERE drop_reason IS NULL
  AND photo_id IN (SELECT photo_id FROM photo_rows WHERE drop_reason IS NULL GROUP BY photo_id HAVING count(*) > 1)
WINDOW same_photo AS (PARTITION BY photo_id);

CREATE OR REPLACE TABLE kept_rows AS
SELECT * FROM photo_rows
WHERE drop_reason IS NULL AND rowid NOT IN (SELECT row_id FROM shared_photo_fates WHERE fate IS NOT NULL);

CREATE OR REPLACE TABLE curated AS
SELECT f.photo_id::BIGINT AS photo_id,
       f.photo_uuid,
       f.observation_uuid,
       f.taxon_id::BIGINT AS taxon_id,
       f.taxon_rank,
       f.scientific_name,
       c.common_name,
       f.kingdom, f.phylum, f."class", f."order", f.family, f.genus, f.species,
       concat_ws(' ', f.kingdom, f.phylum, f."class", f."order", f.family, f.genus,
                 CASE WHEN starts_with(f.species, f.genus || ' ') THEN substr(f.species, length(f.genus) + 2)
                      ELSE f.species END) AS taxonomic_name,
       f.license,
       f.extension,
       f.width, f.height,
       f.observed_on,
       f.latitude, f.longitude, f.positional_accuracy,
       f.anomaly_score,
       $url_prefix || '/' || f.photo_id || '/' || $photo_size || '.' || f.extension AS photo_url,
       $snapshot::DATE AS snapshot
FROM kept_rows AS f
LEFT JOIN common_names AS c ON c.taxon_id = f.taxon_id;
