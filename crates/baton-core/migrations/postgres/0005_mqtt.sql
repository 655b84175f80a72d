-- The MQTT front door: how a device connects, gateways and the sub-devices they relay, the
-- attributes a device reports and the ones operators want it to have, and the subscriptions of a
-- persistent MQTT session (kept across reconnects and restarts, as MQTT promises).

-- `agent` or `mqtt`, set when the device first connects.
ALTER TABLE devices ADD COLUMN transport TEXT;
-- For a sub-device: the gateway that announced it and relays its data and commands.
ALTER TABLE devices ADD COLUMN gateway_id TEXT REFERENCES devices(id) ON DELETE SET NULL;
-- JSON objects: what the device reported about itself, and what operators set for it.
ALTER TABLE devices ADD COLUMN attributes_reported TEXT;
ALTER TABLE devices ADD COLUMN attributes_desired TEXT;
-- JSON list of topic filters with their QoS, for a device connected without a clean session.
ALTER TABLE devices ADD COLUMN mqtt_subscriptions TEXT;

-- Token-style MQTT logins (ThingsBoard's: the secret is the username) find the device by hash.
CREATE INDEX devices_by_credential ON devices (credential_hash);
CREATE INDEX devices_by_gateway ON devices (gateway_id);
