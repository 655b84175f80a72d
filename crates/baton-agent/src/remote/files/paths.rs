//! Which paths remote file transfer may touch: only under `[remote] file_paths`, judged on the
//! canonical path (symbolic links resolved, the target's own link too), so neither `..` nor a
//! link inside an allowed directory pointing out of it reaches anything else. A path that does
//! not exist yet (an upload's target) is judged by its canonical parent plus its name.

use std::{
    io,
    path::{Component, Path, PathBuf},
};

use crate::config::RemoteConfig;

/// Links followed at most while resolving a target that does not exist (a loop stops here).
const MAX_LINKS: usize = 40;

/// `path` resolved to where it really is, if the device allows it; otherwise the reason.
pub fn allowed(config: &RemoteConfig, path: &str) -> Result<PathBuf, String> {
    if config.file_paths.is_empty() {
        return Err(
            "no file_paths are configured on this device; its owner can list directories in `[remote] file_paths`"
                .into(),
        );
    }
    let asked = Path::new(path);
    if !asked.is_absolute() {
        return Err(format!("`{path}` is not an absolute path"));
    }
    if asked.components().any(|c| c == Component::ParentDir) {
        return Err("`..` is not allowed in a path".into());
    }
    let real = canonical(asked, MAX_LINKS).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("`{path}`: its directory does not exist on the device"),
        _ => format!("`{path}`: {e}"),
    })?;
    let inside = roots(config).iter().any(|root| real.starts_with(root));
    if inside {
        return Ok(real);
    }
    let list: Vec<String> = config.file_paths.iter().map(|p| p.display().to_string()).collect();
    Err(format!("`{path}` is outside the allowed paths: {}", list.join(", ")))
}

/// The allowed directories, canonical (those that exist).
pub fn roots(config: &RemoteConfig) -> Vec<PathBuf> {
    config.file_paths.iter().filter_map(|root| std::fs::canonicalize(root).ok()).collect()
}

/// The canonical form of `path`; for a path that does not exist, its canonical parent plus
/// its name, after following a dangling link at the path itself.
fn canonical(path: &Path, links: usize) -> io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let parent = path.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    if let Ok(target) = std::fs::read_link(path) {
        if links == 0 {
            return Err(io::Error::other("too many levels of symbolic links"));
        }
        return canonical(&parent.join(target), links - 1);
    }
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    Ok(std::fs::canonicalize(parent)?.join(name))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn config(roots: &[&Path]) -> RemoteConfig {
        RemoteConfig { files: true, file_paths: roots.iter().map(|p| p.to_path_buf()).collect(), ..Default::default() }
    }

    #[test]
    fn paths_under_the_allowed_directories_are_resolved_and_others_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (allowed_dir, outside) = (dir.path().join("allowed"), dir.path().join("outside"));
        std::fs::create_dir_all(allowed_dir.join("sub")).expect("dirs");
        std::fs::create_dir_all(&outside).expect("dirs");
        std::fs::write(outside.join("secret"), "x").expect("file");
        std::os::unix::fs::symlink(outside.join("secret"), allowed_dir.join("link")).expect("link");
        std::os::unix::fs::symlink(outside.join("new"), allowed_dir.join("dangling")).expect("link");
        std::os::unix::fs::symlink(&outside, allowed_dir.join("door")).expect("link");
        let c = config(&[&allowed_dir]);
        let real = std::fs::canonicalize(&allowed_dir).expect("canonical");
        let at = |p: &Path| allowed(&c, p.to_str().expect("utf-8"));

        assert_eq!(at(&allowed_dir.join("sub/new.bin")), Ok(real.join("sub/new.bin")));
        assert_eq!(at(&allowed_dir), Ok(real.clone()));
        for escape in ["link", "dangling", "door/secret", "door/new"] {
            let err = at(&allowed_dir.join(escape)).expect_err(escape);
            assert!(err.contains("is outside the allowed paths: "), "{escape}: {err}");
        }
        let err = at(&allowed_dir.join("sub/../../outside/secret")).expect_err("dotdot");
        assert_eq!(err, "`..` is not allowed in a path");
        assert!(at(Path::new("relative")).expect_err("relative").contains("not an absolute path"));
        assert!(at(&allowed_dir.join("missing/x")).expect_err("missing").contains("does not exist"));
        let none = allowed(&config(&[]), "/tmp").expect_err("none");
        assert!(none.contains("[remote] file_paths"), "{none}");
    }
}
