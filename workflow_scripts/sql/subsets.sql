-- BioTrove-Train and the benchmarks (paper section 4) from one curated snapshot.
-- Inputs: view curated; tables categories(name, rank), include_taxa(rank, name),
-- lifestage_observations(observation_uuid); settings as DuckDB variables (see subsets.py).
-- A species is the full lineage down to the ancestor-or-self at rank species (`taxonomic_name`),
-- so infraspecific taxa roll up into their species and no two species merge by epithet.
-- Every choice is by a salted MD5 of an id, never by file or row order, so a photo keeps its
-- place from one monthly snapshot to the next unless its species crosses a threshold.

CREATE OR REPLACE MACRO rank_value(r, kingdom, phylum, "class", "order", family, genus, species) AS
    CASE r WHEN 'kingdom' THEN kingdom WHEN 'phylum' THEN phylum WHEN 'class' THEN "class" WHEN 'order' THEN "order"
           WHEN 'family' THEN family WHEN 'genus' THEN genus WHEN 'species' THEN species END;

-- An MD5, as hex (md5_number is ten times slower); hex order is number order. share(): its first
-- 32 bits as a fraction in [0, 1), for the splits.
CREATE OR REPLACE MACRO salted(kind, id) AS md5(getvariable('salt') || ':' || kind || ':' || id);
CREATE OR REPLACE MACRO share(hex) AS ('0x' || hex[1:8])::UBIGINT / 4294967296;

-- Photos that can go into Train, Balanced or Unseen: a species, a category, observed before the
-- cutoff, under an included taxon, and not an observation that LifeStages uses.
-- Kept narrow: the outputs take their columns from curated as they are written.
CREATE OR REPLACE TABLE eligible AS
SELECT c.photo_id, c.observation_uuid, c.taxonomic_name AS species_key, k.name AS category
FROM curated AS c
JOIN categories AS k
  ON rank_value(k.rank, c.kingdom, c.phylum, c."class", c."order", c.family, c.genus, c.species) = k.name
WHERE c.species IS NOT NULL
  AND c.observed_on < getvariable('observed_before')::DATE
  AND ((SELECT count(*) FROM include_taxa) = 0
       OR EXISTS (SELECT 1 FROM include_taxa AS i
                  WHERE rank_value(i.rank, c.kingdom, c.phylum, c."class", c."order", c.family, c.genus, c.species)
                        = i.name))
  AND c.observation_uuid NOT IN (SELECT observation_uuid FROM lifestage_observations);

CREATE OR REPLACE TABLE species_sizes AS
SELECT species_key, category, count(*) AS images, salted('species', species_key) AS species_hash
FROM eligible GROUP BY species_key, category;

-- Balanced: per category the first N species (hash order) that keep Train's minimum after giving
-- up their images; per species the first M photos in (observation, photo) hash order.
CREATE OR REPLACE TABLE balanced_species AS
SELECT species_key FROM species_sizes
WHERE images >= getvariable('min_images') + getvariable('balanced_images')
QUALIFY row_number() OVER (PARTITION BY category ORDER BY species_hash, species_key)
        <= getvariable('balanced_species');

-- (min_by(x, key, n) keeps the n smallest keys per group without sorting the group.)
CREATE OR REPLACE TABLE balanced_observations AS
SELECT unnest(min_by(observation_uuid, salted('observation', observation_uuid), getvariable('balanced_images')))
           AS observation_uuid
FROM (SELECT DISTINCT species_key, observation_uuid FROM eligible SEMI JOIN balanced_species USING (species_key))
GROUP BY species_key;

CREATE OR REPLACE TABLE balanced_photos AS
SELECT photo_id, observation_uuid FROM eligible SEMI JOIN balanced_observations USING (observation_uuid)
QUALIFY row_number() OVER (PARTITION BY species_key ORDER BY salted('observation', observation_uuid),
                                                           salted('photo', photo_id))
        <= getvariable('balanced_images');

-- Unseen: species below Train's minimum, with at least unseen_min images: all of them.
CREATE OR REPLACE TABLE unseen_photos AS
SELECT e.photo_id FROM eligible AS e JOIN species_sizes AS s USING (species_key, category)
WHERE s.images >= getvariable('unseen_min') AND s.images < getvariable('min_images');

-- Train: species at or above the minimum, without the observations Balanced uses (a split
-- observation would leak), capped in photo-hash order (only species over the cap need the
-- order), split by observation hash.
CREATE OR REPLACE TABLE train_candidates AS
SELECT e.photo_id, e.observation_uuid, e.species_key, s.images > getvariable('max_images') AS over_cap
FROM eligible AS e JOIN species_sizes AS s USING (species_key, category)
WHERE s.images >= getvariable('min_images')
  AND e.observation_uuid NOT IN (SELECT observation_uuid FROM balanced_photos);

CREATE OR REPLACE TABLE train_photos AS
WITH kept AS (
    SELECT photo_id, observation_uuid FROM train_candidates WHERE NOT over_cap
    UNION ALL
    SELECT unnest(picked, recursive := true) FROM (
        SELECT min_by({'photo_id': photo_id, 'observation_uuid': observation_uuid}, salted('photo', photo_id),
                      getvariable('max_images')) AS picked
        FROM train_candidates WHERE over_cap GROUP BY species_key)
)
SELECT photo_id,
       CASE WHEN position < getvariable('test_fraction') THEN 'test'
            WHEN position < getvariable('test_fraction') + getvariable('val_fraction') THEN 'val'
            ELSE 'train' END AS split
FROM (SELECT photo_id, share(salted('observation', observation_uuid)) AS position FROM kept);

-- Every species with its size and what the thresholds made of it (kept for the next snapshot's
-- stability report).
CREATE OR REPLACE TABLE species_status AS
SELECT s.species_key, s.category, s.images,
       CASE WHEN b.species_key IS NOT NULL THEN 'balanced_and_train'
            WHEN s.images >= getvariable('min_images') THEN 'train'
            WHEN s.images >= getvariable('unseen_min') THEN 'unseen'
            ELSE 'too_few' END AS status
FROM species_sizes AS s LEFT JOIN balanced_species AS b USING (species_key);

