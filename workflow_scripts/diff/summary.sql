-- The report's summary of the data diff (diff.sql and stability.sql made its tables): small
-- tables the report reads whole, each with a total order.

CREATE OR REPLACE TABLE species_summary AS
SELECT count(*) FILTER (WHERE previous_images > 0) AS previous, count(*) FILTER (WHERE current_images > 0) AS current,
       coalesce(list(species_key ORDER BY species_key) FILTER (WHERE change = 'added'), []) AS added,
       coalesce(list(species_key ORDER BY species_key) FILTER (WHERE change = 'removed'), []) AS removed,
       count(*) FILTER (WHERE change = 'changed') AS images_changed
FROM species_images;

CREATE OR REPLACE TABLE categories_summary AS SELECT * FROM category_images ORDER BY category;

-- Each taxon that became inactive, with the taxa its observations point at now (most first).
CREATE OR REPLACE TABLE inactivated_summary AS
SELECT taxon_id, name, rank,
       coalesce(list({'taxon_id': replaced_by_id, 'name': replaced_by, 'observations': observations}
                     ORDER BY observations DESC, replaced_by_id NULLS FIRST) FILTER (WHERE observations > 0),
                []) AS replaced_by
FROM inactivated_taxa GROUP BY taxon_id, name, rank ORDER BY taxon_id;

CREATE OR REPLACE TABLE deleted_summary AS
SELECT count(*) AS photos, count(*) FILTER (WHERE in_dataset) AS in_dataset FROM deleted_photos;

CREATE OR REPLACE TABLE license_summary AS
SELECT previous_license, current_license, effect, count(*) AS photos FROM license_changes GROUP BY ALL ORDER BY 1, 2, 3;

CREATE OR REPLACE TABLE stability_summary AS
SELECT (SELECT count(*) FROM current_curated SEMI JOIN previous_curated USING (photo_id)) AS photos_in_both,
       (SELECT count(*) FROM moved) AS moved;

-- The reason without its details in parentheses.
CREATE OR REPLACE TABLE moved_by_reason AS
SELECT regexp_replace(reason, ' \(.*', '') AS reason, count(*) AS photos FROM moved GROUP BY 1 ORDER BY 1;

CREATE OR REPLACE TABLE benchmark_summary AS
SELECT p.*,
       coalesce((SELECT list(species_key ORDER BY species_key) FROM benchmark_species AS s
                 WHERE s.benchmark = p.benchmark AND s.change = 'added'), []) AS species_added,
       coalesce((SELECT list(species_key ORDER BY species_key) FROM benchmark_species AS s
                 WHERE s.benchmark = p.benchmark AND s.change = 'removed'), []) AS species_removed
FROM benchmark_photos AS p ORDER BY benchmark;

CREATE OR REPLACE TABLE moved_in_order AS SELECT * FROM moved ORDER BY photo_id;
