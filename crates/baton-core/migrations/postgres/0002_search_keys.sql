-- Case-insensitive search that behaves the same on every engine: the lowercase text is computed
-- by the server (Unicode-aware) and stored, instead of relying on each engine's LOWER/LIKE.
ALTER TABLE devices ADD COLUMN search_key TEXT NOT NULL DEFAULT '';
UPDATE devices SET search_key = LOWER(name || ' ' || COALESCE(serial, ''));
ALTER TABLE device_groups ADD COLUMN search_key TEXT NOT NULL DEFAULT '';
UPDATE device_groups SET search_key = LOWER(name);
