//! Opening a file to read it once its path was judged allowed, without a race: the path was
//! checked (canonical, inside the allowed places) before it is opened, and a local user could
//! swap its last component for a link, or a directory on the way for a link elsewhere, in
//! between. So the file is opened without following a link at its end (`O_NOFOLLOW`), without
//! blocking (`O_NONBLOCK`: a FIFO put there would hang the open), and then judged by what was
//! opened: its real path (Linux: `/proc/self/fd/N`; elsewhere: the canonical path again, which
//! must be the same file) must lie under an allowed root, and it must be a regular file (not a
//! FIFO, a device or a socket).

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

/// Opens `path` (canonical) for reading if, once open, it is a regular file under one of
/// `roots` (canonical). `shown` names it in the refusals, which are [`io::ErrorKind::Other`]
/// errors whose text says it all; other errors are the system's.
pub fn open_regular(path: &Path, shown: &str, roots: &[PathBuf]) -> io::Result<File> {
    let file = open(path, shown)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::other(format!("{shown} is a directory; name a file in it")));
    }
    if !meta.is_file() {
        return Err(io::Error::other(format!("{shown} is not a regular file")));
    }
    let real = real_path(&file, path)?;
    if !roots.iter().any(|root| real.starts_with(root)) {
        return Err(io::Error::other(format!(
            "{shown} leads to {} now, outside the allowed paths; refused",
            real.display()
        )));
    }
    Ok(file)
}

#[cfg(unix)]
fn open(path: &Path, shown: &str) -> io::Result<File> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path).map_err(|e| match e.raw_os_error() {
        Some(nix::libc::ELOOP) => io::Error::other(format!("{shown} is a symbolic link now; refused")),
        _ => e,
    })
}

#[cfg(not(unix))]
fn open(path: &Path, _shown: &str) -> io::Result<File> {
    File::open(path)
}

/// Where the open `file` really is. On Linux, what `/proc/self/fd` says; where that cannot be
/// read (or elsewhere), `path` resolved again, if it is still the same file.
fn real_path(file: &File, path: &Path) -> io::Result<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            return Ok(real);
        }
    }
    let real = std::fs::canonicalize(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (opened, there) = (file.metadata()?, std::fs::metadata(&real)?);
        if (opened.dev(), opened.ino()) != (there.dev(), there.ino()) {
            return Err(io::Error::other(format!("{} was replaced while it was opened; refused", path.display())));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(real)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_still_under_the_roots_is_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical");
        let (allowed, outside) = (base.join("allowed"), base.join("outside"));
        std::fs::create_dir_all(allowed.join("sub")).expect("dirs");
        std::fs::create_dir_all(&outside).expect("dirs");
        std::fs::write(allowed.join("app.log"), "ok\n").expect("file");
        std::fs::write(outside.join("secret"), "s\n").expect("file");
        let roots = [allowed.clone()];
        let open = |p: &Path| open_regular(p, &p.display().to_string(), &roots).map(|_| ()).map_err(|e| e.to_string());

        assert_eq!(open(&allowed.join("app.log")), Ok(()));
        // A FIFO put where the file was: refused at once, not waited on.
        nix::unistd::mkfifo(&allowed.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        assert!(open(&allowed.join("fifo")).expect_err("fifo").ends_with("is not a regular file"));
        assert!(open(&allowed.join("sub")).expect_err("dir").contains("is a directory"));
        // The last component swapped for a link after the check.
        std::os::unix::fs::symlink(outside.join("secret"), allowed.join("swapped")).expect("link");
        assert!(open(&allowed.join("swapped")).expect_err("link").contains("is a symbolic link now; refused"));
        // A directory on the way swapped for a link out of the roots.
        std::fs::remove_dir(allowed.join("sub")).expect("rmdir");
        std::os::unix::fs::symlink(&outside, allowed.join("sub")).expect("link");
        let err = open(&allowed.join("sub/secret")).expect_err("moved out");
        assert!(err.contains("outside the allowed paths; refused"), "{err}");
        assert!(open(&allowed.join("missing")).is_err());
    }
}
