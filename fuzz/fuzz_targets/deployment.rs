//! What the agent parses before it lets an update near the device: the deployment (artifact
//! metadata, install settings, keys and endorsements), the signed execution claims, version
//! ranges and install paths and modes. None of it panics on any input.
#![no_main]

use baton_proto::{
    api::rollouts::InstallSpec,
    deployment::{Deployment, ExecutionClaims, endorsement_statement, install_line},
    version,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = serde_json::from_slice::<Deployment>(data) {
        let _ = install_line(&d.install);
        for e in &d.key_endorsements {
            let _ = endorsement_statement(&e.key);
        }
        if let Some(range) = d.artifact.depends.as_ref().map(|dep| dep.versions.clone()) {
            let _ = version::satisfies(&d.artifact.version, &range);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = ExecutionClaims::parse(text);
    let _ = InstallSpec::path_problem(text);
    let _ = InstallSpec::parse_mode(text);
    if let Some((a, b)) = text.split_once('\n') {
        let _ = version::compare(a, b);
        let _ = version::satisfies(a, b);
    }
});
