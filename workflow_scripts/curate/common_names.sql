-- One common name per taxon from the configured lexicon's VernacularNames file. The archive has
-- no "preferred" flag, so: the oldest row (by `created`) wins, ties broken by the name itself.
CREATE OR REPLACE TABLE common_names AS
SELECT id AS taxon_id,
       first(trim(vernacularName) ORDER BY created NULLS LAST, trim(vernacularName)) AS common_name
FROM vernacular
WHERE nullif(trim(vernacularName), '') IS NOT NULL
GROUP BY id;
