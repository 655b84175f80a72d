-- Device identity with certificates. Each tenant has one certificate authority at a time: made
-- by the server at first need, or an intermediate the tenant uploaded; its private key is
-- sealed like the signing keys. Device certificates are recognised at a handshake by the
-- SHA-256 of their DER, so one issued under an earlier authority stays valid until it expires
-- or is revoked (decommissioning revokes them all).
CREATE TABLE certificate_authorities (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    certificate TEXT NOT NULL,
    private_key TEXT NOT NULL,
    origin TEXT NOT NULL,
    subject TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE device_certificates (
    fingerprint TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    serial TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX device_certificates_by_device ON device_certificates (tenant_id, device_id, created_at, fingerprint);
