-- BioTrove-Train and the benchmarks (paper section 4), and the genus-sampled subset, from one
-- curated snapshot. Inputs: view curated; tables include_taxa(rank, name), genus_categories(name),
-- genus_include_taxa(rank, name), lifestage_observations(observation_uuid); settings as DuckDB
-- variables (see build.py); macros over a taxon's row t, generated from common/taxonomy.py (the
-- ranks and the category rule): rank_value(rank, t), categories_of(t), genus_key(t).
-- A species is the full lineage down to the ancestor-or-self at rank species (`taxonomic_name`),
-- so infraspecific taxa roll up into their species and no two species merge by epithet; a genus is
-- the lineage down to rank genus.
-- Every choice is by a salted MD5 of an id, never by file or row order, so a photo keeps its
-- place from one monthly snapshot to the next unless its species crosses a threshold.

-- An MD5, as hex (md5_number is ten times slower); hex order is number order. Kinds are one letter
-- (g: genus, o: observation, p: photo, s: species) so that salt, kind and a uuid fit one 64-byte MD5
-- block. The genus-sampled subset has a salt of its own.
CREATE OR REPLACE MACRO salted_with(salt, kind, id) AS md5(salt || ':' || kind || ':' || id);
CREATE OR REPLACE MACRO salted(kind, id) AS salted_with(getvariable('salt'), kind, id);
CREATE OR REPLACE MACRO genus_salted(kind, id) AS salted_with(getvariable('genus_salt'), kind, id);

-- Each taxon's species, genus and category, decided once per taxon rather than per photo: a taxon
-- at or below rank species, in a category, under an included taxon. `species` numbers the
-- species_keys. `in_genus_draw`: its genus may be drawn (in genus_categories, under a
-- genus_include_taxa taxon; an empty list allows all).
CREATE OR REPLACE TABLE taxon_species AS
SELECT taxon_id, dense_rank() OVER (ORDER BY species_key) AS species, species_key, genus_key, category,
       in_genus_draw
FROM (SELECT t.taxon_id, t.taxonomic_name AS species_key,
             CASE WHEN t.genus IS NOT NULL THEN genus_key(t) END AS genus_key,
             k.category,
             ((SELECT count(*) FROM genus_categories) = 0 OR k.category IN (SELECT name FROM genus_categories))
             AND ((SELECT count(*) FROM genus_include_taxa) = 0
                  OR EXISTS (SELECT 1 FROM genus_include_taxa AS i
                             WHERE i.rank <> 'species' AND rank_value(i.rank, t) = i.name)) AS in_genus_draw
      FROM (SELECT DISTINCT taxon_id, taxonomic_name, kingdom, phylum, "class", "order", family, genus, species
            FROM curated WHERE species IS NOT NULL) AS t, unnest(categories_of(t)) AS k(category)
      WHERE (SELECT count(*) FROM include_taxa) = 0
         OR EXISTS (SELECT 1 FROM include_taxa AS i WHERE rank_value(i.rank, t) = i.name));

-- Photos that can go into a subset: such a taxon, observed before the cutoff, and not an
-- observation that LifeStages uses. Kept narrow: the outputs take their columns from curated as
-- they are written.
CREATE OR REPLACE VIEW eligible_photos AS
SELECT c.photo_id, c.observation_uuid, t.species
FROM curated AS c JOIN taxon_species AS t USING (taxon_id)
WHERE c.observed_on < getvariable('observed_before')::DATE
  AND c.observation_uuid NOT IN (SELECT observation_uuid FROM lifestage_observations);

CREATE OR REPLACE TABLE species_images AS
SELECT s.species, s.species_key, s.genus_key, s.category, s.in_genus_draw, e.images,
       salted('s', s.species_key) AS species_hash
FROM (SELECT species, count(*) AS images FROM eligible_photos GROUP BY species) AS e
JOIN (SELECT DISTINCT species, species_key, genus_key, category, in_genus_draw FROM taxon_species) AS s USING (species);

-- Genus-sampled (the Pl@ntNet-300K recipe): whole genera, so congeners stay together and the long
-- tail is kept. A genus qualifies when all its species may be drawn and genus_min_species of them
-- have genus_min_images; the drawn ones are those whose hash falls below genus_cut (a fraction:
-- each genus's own test, stable as months add genera) and among them the first genera_count in hash
-- order (a count). A drawn genus leaves the other subsets whole; its species below the minimum are
-- in no subset (counted in the report).
CREATE OR REPLACE TABLE qualifying_genera AS
SELECT genus_key, genus_salted('g', genus_key) AS genus_hash
FROM species_images WHERE genus_key IS NOT NULL
GROUP BY genus_key
HAVING bool_and(in_genus_draw)
   AND count(*) FILTER (WHERE images >= getvariable('genus_min_images')) >= getvariable('genus_min_species');

CREATE OR REPLACE TABLE sampled_genera AS
SELECT genus_key FROM qualifying_genera WHERE genus_hash[1:8] < getvariable('genus_cut')
QUALIFY row_number() OVER (ORDER BY genus_hash, genus_key) <= getvariable('genera_count');

CREATE OR REPLACE TABLE genus_sampled_species AS
SELECT species, images >= getvariable('genus_min_images') AS kept FROM species_images SEMI JOIN sampled_genera USING (genus_key);

CREATE OR REPLACE TABLE genus_sampled_photos AS
SELECT photo_id, species,
       CASE WHEN position < getvariable('genus_test_cut') THEN 'test'
            WHEN position < getvariable('genus_val_cut') THEN 'val'
            ELSE 'train' END AS split
FROM (SELECT photo_id, species, genus_salted('o', observation_uuid)[1:8] AS position FROM eligible_photos
      WHERE species IN (SELECT species FROM genus_sampled_species WHERE kept));

-- What Train, Balanced and Unseen draw from: the photos of species outside the drawn genera.
CREATE OR REPLACE TABLE eligible AS
SELECT * FROM eligible_photos WHERE species NOT IN (SELECT species FROM genus_sampled_species);

CREATE OR REPLACE TABLE species_sizes AS
SELECT species, species_key, category, images, species_hash FROM species_images
ANTI JOIN genus_sampled_species USING (species);

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
-- observation would be in both), capped in photo-hash order (only species over the cap need the
-- order), split by the first 32 bits of the observation hash (hex_cut in build.py).
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
FROM species_sizes AS s LEFT JOIN balanced_species AS b USING (species)
UNION ALL
SELECT s.species_key, s.category, s.images,
       CASE WHEN g.kept THEN 'genus_sampled' ELSE 'genus_sampled_too_few' END AS status
FROM species_images AS s JOIN genus_sampled_species AS g USING (species);

-- Train's split for every curated row, in curated's order, which is photo_id order (NULL: not in
-- Train). build.py writes Train by a positional join of curated with this, so Train comes out
-- sorted without a sort of its full-width rows (which at 40 M rows would spill to disk).
CREATE OR REPLACE TABLE train_positions AS
SELECT t.split FROM (SELECT photo_id FROM curated) AS c LEFT JOIN train_photos AS t USING (photo_id)
ORDER BY c.photo_id;
