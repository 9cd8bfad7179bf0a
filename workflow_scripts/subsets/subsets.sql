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

-- An MD5, as hex (md5_number is ten times slower); hex order is number order. Kinds are one letter
-- (o: observation, p: photo, s: species) so that salt, kind and a uuid fit one 64-byte MD5 block.
CREATE OR REPLACE MACRO salted(kind, id) AS md5(getvariable('salt') || ':' || kind || ':' || id);

-- Each taxon's species and category, decided once per taxon rather than per photo: a taxon at or
-- below rank species, in a category, under an included taxon. `species` numbers the species_keys.
CREATE OR REPLACE TABLE taxon_species AS
SELECT taxon_id, dense_rank() OVER (ORDER BY species_key) AS species, species_key, category
FROM (SELECT t.taxon_id, t.taxonomic_name AS species_key, k.name AS category
      FROM (SELECT DISTINCT taxon_id, taxonomic_name, kingdom, phylum, "class", "order", family, genus, species
            FROM curated WHERE species IS NOT NULL) AS t
      JOIN categories AS k
        ON rank_value(k.rank, t.kingdom, t.phylum, t."class", t."order", t.family, t.genus, t.species) = k.name
      WHERE (SELECT count(*) FROM include_taxa) = 0
         OR EXISTS (SELECT 1 FROM include_taxa AS i
                    WHERE rank_value(i.rank, t.kingdom, t.phylum, t."class", t."order", t.family, t.genus, t.species)
                          = i.name));

-- Photos that can go into Train, Balanced or Unseen: such a taxon, observed before the cutoff, and
-- not an observation that LifeStages uses. Kept narrow: the outputs take their columns from
-- curated as they are written.
CREATE OR REPLACE TABLE eligible AS
SELECT c.photo_id, c.observation_uuid, t.species
FROM curated AS c JOIN taxon_species AS t USING (taxon_id)
WHERE c.observed_on < getvariable('observed_before')::DATE
  AND c.observation_uuid NOT IN (SELECT observation_uuid FROM lifestage_observations);

CREATE OR REPLACE TABLE species_sizes AS
SELECT s.species, s.species_key, s.category, e.images, salted('s', s.species_key) AS species_hash
FROM (SELECT species, count(*) AS images FROM eligible GROUP BY species) AS e
JOIN (SELECT DISTINCT species, species_key, category FROM taxon_species) AS s USING (species);

-- Balanced: per category the first N species (hash order) that keep Train's minimum after giving
-- up their images; per species the first M photos in (observation, photo) hash order.
CREATE OR REPLACE TABLE balanced_species AS
SELECT species FROM species_sizes
WHERE images >= getvariable('min_images') + getvariable('balanced_images')
QUALIFY row_number() OVER (PARTITION BY category ORDER BY species_hash, species)
        <= getvariable('balanced_species');

-- (min_by(x, key, n) keeps the n smallest keys per group without sorting the group.)
CREATE OR REPLACE TABLE balanced_observations AS
SELECT unnest(min_by(observation_uuid, salted('o', observation_uuid), getvariable('balanced_images')))
           AS observation_uuid
FROM (SELECT DISTINCT species, observation_uuid FROM eligible SEMI JOIN balanced_species USING (species))
GROUP BY species;

CREATE OR REPLACE TABLE balanced_photos AS
SELECT photo_id, observation_uuid, species FROM eligible SEMI JOIN balanced_observations USING (observation_uuid)
QUALIFY row_number() OVER (PARTITION BY species ORDER BY salted('o', observation_uuid), salted('p', photo_id))
        <= getvariable('balanced_images');

-- Unseen: species below Train's minimum, with at least unseen_min images: all of them.
CREATE OR REPLACE TABLE unseen_photos AS
SELECT e.photo_id, e.species FROM eligible AS e JOIN species_sizes AS s USING (species)
WHERE s.images >= getvariable('unseen_min') AND s.images < getvariable('min_images');

-- Train: species at or above the minimum, without the observations Balanced uses (a split
-- observation would leak), capped in photo-hash order (only species over the cap need the
-- order), split by the first 32 bits of the observation hash (hex_cut in subsets.py).
CREATE OR REPLACE TABLE capped_photos AS
SELECT unnest(min_by(e.photo_id, salted('p', e.photo_id), getvariable('max_images'))) AS photo_id
FROM eligible AS e JOIN species_sizes AS s USING (species)
WHERE s.images > getvariable('max_images')
  AND e.observation_uuid NOT IN (SELECT observation_uuid FROM balanced_photos)
GROUP BY e.species;

CREATE OR REPLACE TABLE train_photos AS
SELECT photo_id, species,
       CASE WHEN position < getvariable('test_cut') THEN 'test'
            WHEN position < getvariable('val_cut') THEN 'val'
            ELSE 'train' END AS split
FROM (SELECT e.photo_id, e.species, salted('o', e.observation_uuid)[1:8] AS position
      FROM eligible AS e JOIN species_sizes AS s USING (species)
      WHERE s.images >= getvariable('min_images')
        AND e.observation_uuid NOT IN (SELECT observation_uuid FROM balanced_photos)
        AND (s.images <= getvariable('max_images') OR e.photo_id IN (SELECT photo_id FROM capped_photos)));

-- Every species with its size and what the thresholds made of it (kept for the next snapshot's
-- stability report).
CREATE OR REPLACE TABLE species_status AS
SELECT s.species_key, s.category, s.images,
       CASE WHEN b.species IS NOT NULL THEN 'balanced_and_train'
            WHEN s.images >= getvariable('min_images') THEN 'train'
            WHEN s.images >= getvariable('unseen_min') THEN 'unseen'
            ELSE 'too_few' END AS status
FROM species_sizes AS s LEFT JOIN balanced_species AS b USING (species);

-- Train's split for every curated row, in curated's order, which is photo_id order (NULL: not in
-- Train). subsets.py writes Train by a positional join of curated with this, so Train comes out
-- sorted without a sort of its full-width rows (which at 40 M rows would spill to disk).
CREATE OR REPLACE TABLE train_positions AS
SELECT t.split FROM (SELECT photo_id FROM curated) AS c LEFT JOIN train_photos AS t USING (photo_id)
ORDER BY c.photo_id;
