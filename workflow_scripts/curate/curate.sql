-- BioTrove curation (paper section 3, appendix A.5): every photo row gets exactly one fate,
-- kept or a drop reason, so that photos_in = photos_out + sum(dropped).
-- Settings come as DuckDB variables (SET VARIABLE, read with getvariable): quality_grades, kingdoms,
-- licenses (lists), url_prefix, photo_size, snapshot.
-- The wide joined rows are never stored: decisions are made on narrow tables and the kept rows
-- are joined once more as they are written (joins are cheap next to materialising wide rows).

-- A repeated observation_uuid would multiply its photos in the join: keep one, deterministically.
-- Repeats are rare, so only they go through the window. Rows of one key that differ were rejected
-- as the tables were read (stage.py: CONFLICTS): what repeats here is the same row again.
CREATE OR REPLACE TABLE repeated_observations AS
SELECT observation_uuid, count(*) AS copies FROM observations GROUP BY observation_uuid HAVING count(*) > 1;

CREATE OR REPLACE VIEW observations_unique AS
SELECT * FROM observations ANTI JOIN repeated_observations USING (observation_uuid)
UNION ALL
SELECT * FROM (SELECT * FROM observations SEMI JOIN repeated_observations USING (observation_uuid)
               QUALIFY row_number() OVER (PARTITION BY observation_uuid
                                          ORDER BY taxon_id, quality_grade, observed_on, latitude, longitude,
                                                   positional_accuracy, anomaly_score) = 1);

CREATE OR REPLACE TABLE taxa_unique AS
SELECT * FROM taxa QUALIFY row_number() OVER (PARTITION BY taxon_id ORDER BY active DESC, name) = 1;

CREATE OR REPLACE VIEW photo_rows AS
SELECT p.rowid AS photo_row, p.photo_id, p.photo_uuid, p.observation_uuid, p.extension, p.license, p.width,
       p.height, p.position, o.taxon_id, o.observed_on, o.latitude, o.longitude, o.positional_accuracy,
       o.anomaly_score, t.rank AS taxon_rank, t.name AS scientific_name,
       l.kingdom, l.phylum, l."class", l."order", l.family, l.genus, l.species, l.rejected_ancestors,
       CASE
           WHEN o.observation_uuid IS NULL THEN
               CASE WHEN p.observation_uuid::VARCHAR IN (SELECT key FROM conflicting_keys_observations)
                    THEN 'conflicting_observation'
                    WHEN p.observation_uuid::VARCHAR IN (SELECT key FROM rejected_keys_observations)
                    THEN 'observation_rejected' ELSE 'observation_missing' END
           WHEN NOT coalesce(list_contains(getvariable('quality_grades'), o.quality_grade), false) THEN 'quality_grade'
           WHEN o.taxon_id IS NULL THEN 'no_taxon'
           WHEN t.taxon_id IS NULL THEN
               CASE WHEN o.taxon_id::VARCHAR IN (SELECT key FROM conflicting_keys_taxa) THEN 'conflicting_taxon'
                    WHEN o.taxon_id::VARCHAR IN (SELECT key FROM rejected_keys_taxa)
                    THEN 'taxon_rejected' ELSE 'taxon_missing_from_taxa' END
           WHEN NOT coalesce(t.active, false) THEN 'taxon_inactive'
           WHEN l.conflicting_ancestors > 0 THEN 'conflicting_taxon'
           WHEN l.rejected_ancestors > 0 THEN 'ancestor_rejected'
           WHEN NOT coalesce(list_contains(getvariable('kingdoms'), l.kingdom), false) THEN 'kingdom'
           WHEN NOT coalesce(list_contains(getvariable('licenses'), p.license), false) THEN 'license'
       END AS drop_reason
FROM photos AS p
LEFT JOIN observations_unique AS o ON o.observation_uuid = p.observation_uuid
LEFT JOIN taxa_unique AS t ON t.taxon_id = o.taxon_id
LEFT JOIN lineage AS l ON l.taxon_id = o.taxon_id;

CREATE OR REPLACE TABLE photo_fates AS
SELECT photo_row, photo_id, taxon_id, drop_reason FROM photo_rows;

-- A photo attached to several kept observations: one row if they agree on the taxon (the
-- smallest observation_uuid), none if they disagree (conflicting labels). Only those photos
-- (about 0.1%) need a decision, so it is made on them alone. The order is total over what the
-- output shows, so whichever of two identical rows is kept, the bytes are the same.
CREATE OR REPLACE TABLE shared_photo_fates AS
SELECT photo_row,
       CASE WHEN min(taxon_id) OVER same_photo <> max(taxon_id) OVER same_photo THEN 'conflicting_labels'
            WHEN row_number() OVER (PARTITION BY photo_id ORDER BY observation_uuid, photo_uuid, position, license,
                                    extension, width, height) > 1 THEN 'duplicate_photo'
       END AS fate
FROM photo_rows
WHERE drop_reason IS NULL
  AND photo_id IN (SELECT photo_id FROM photo_fates WHERE drop_reason IS NULL GROUP BY photo_id HAVING count(*) > 1)
WINDOW same_photo AS (PARTITION BY photo_id);

CREATE OR REPLACE VIEW kept_photo_rows AS
SELECT * FROM photo_fates
WHERE drop_reason IS NULL AND photo_row NOT IN (SELECT photo_row FROM shared_photo_fates WHERE fate IS NOT NULL);

-- The output, in photo_id order. Strings derived from other columns are built after the sort:
-- carrying them through it costs more than the rest of the sort (a projection keeps the order).
CREATE OR REPLACE VIEW curated AS
SELECT photo_id, photo_uuid::VARCHAR AS photo_uuid, observation_uuid::VARCHAR AS observation_uuid, taxon_id,
       taxon_rank, scientific_name, common_name,
       kingdom, phylum, "class", "order", family, genus, species,
       concat_ws(' ', kingdom, phylum, "class", "order", family, genus,
                 CASE WHEN starts_with(species, genus || ' ') THEN substr(species, length(genus) + 2)
                      ELSE species END) AS taxonomic_name,
       license, extension, width, height, observed_on, latitude, longitude, positional_accuracy, anomaly_score,
       getvariable('url_prefix') || '/' || photo_id || '/' || getvariable('photo_size') || '.' || extension
           AS photo_url,
       getvariable('snapshot')::DATE AS snapshot
FROM (SELECT f.photo_id::BIGINT AS photo_id, f.photo_uuid, f.observation_uuid, f.taxon_id::BIGINT AS taxon_id,
             f.taxon_rank, f.scientific_name, c.common_name,
             f.kingdom, f.phylum, f."class", f."order", f.family, f.genus, f.species,
             f.license, f.extension, f.width, f.height, f.observed_on,
             f.latitude, f.longitude, f.positional_accuracy, f.anomaly_score
      FROM photo_rows AS f
      SEMI JOIN kept_photo_rows AS k ON k.photo_row = f.photo_row
      LEFT JOIN common_names AS c ON c.taxon_id = f.taxon_id
      ORDER BY f.photo_id);
