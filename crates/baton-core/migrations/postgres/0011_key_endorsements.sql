-- A signing key vouching for another (the TUF root-rotation pattern): made when a key is added,
-- with each key the server holds then. Agents trust a new key only through an endorsement by a
-- key they pinned; kept after the signer is revoked, so a device that was offline through a
-- rotation can still follow it.
CREATE TABLE key_endorsements (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    key_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key_id, signer_key_id)
);
