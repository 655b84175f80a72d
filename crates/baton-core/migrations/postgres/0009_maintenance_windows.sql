-- Maintenance windows of a group (JSON list); rollouts install on its devices only inside them.
ALTER TABLE device_groups ADD COLUMN maintenance_windows TEXT;
