//! cutfs through the kernel: what a program writes through the mount, and what a cut leaves of
//! it in the backing directory and on the next mount.

#![cfg(target_os = "linux")]

use std::{fs::OpenOptions, io::Write, path::Path};

use baton_testkit::{Tool, cutfs::CutFs, require};

/// A backing directory and a mount point, both fresh.
fn dirs() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backing, mountpoint) = (dir.path().join("backing"), dir.path().join("mnt"));
    std::fs::create_dir(&backing).expect("backing");
    std::fs::create_dir(&mountpoint).expect("mountpoint");
    (dir, backing, mountpoint)
}

fn append(path: &Path, text: &str, sync: bool) {
    let mut file = OpenOptions::new().create(true).append(true).open(path).expect("open");
    file.write_all(text.as_bytes()).expect("write");
    if sync {
        file.sync_data().expect("fdatasync");
    }
}

#[test]
fn a_cut_keeps_what_was_synced_and_drops_the_rest() {
    if !require(&[Tool::Fuse]) {
        return;
    }
    let (_dir, backing, mountpoint) = dirs();
    let fs = CutFs::mount(&backing, &mountpoint).expect("mount");
    append(&mountpoint.join("log"), "synced,", true);
    append(&mountpoint.join("log"), "not synced", false);
    append(&mountpoint.join("other"), "never synced", false);
    std::fs::create_dir(mountpoint.join("sub")).expect("mkdir");
    append(&mountpoint.join("sub/kept"), "in a directory", true);
    assert_eq!(std::fs::read_to_string(mountpoint.join("log")).expect("read"), "synced,not synced");
    assert_eq!(std::fs::read_to_string(backing.join("log")).expect("read"), "synced,", "unsynced stays in memory");

    let lost = fs.cut().expect("cut");
    assert_eq!(lost.files, 2, "{lost:?}");
    let fs = CutFs::mount(&backing, &mountpoint).expect("mount again");
    assert_eq!(std::fs::read_to_string(mountpoint.join("log")).expect("read"), "synced,");
    assert_eq!(std::fs::read_to_string(mountpoint.join("other")).expect("read"), "", "created, never written");
    assert_eq!(std::fs::read_to_string(mountpoint.join("sub/kept")).expect("read"), "in a directory");
    drop(fs);
}

#[test]
fn renames_truncations_and_removals_reach_the_backing_directory_at_once() {
    if !require(&[Tool::Fuse]) {
        return;
    }
    let (_dir, backing, mountpoint) = dirs();
    let fs = CutFs::mount(&backing, &mountpoint).expect("mount");
    append(&mountpoint.join("a"), "0123456789", true);
    std::fs::rename(mountpoint.join("a"), mountpoint.join("b")).expect("rename");
    OpenOptions::new().write(true).open(mountpoint.join("b")).expect("open").set_len(4).expect("truncate");
    append(&mountpoint.join("gone"), "x", true);
    std::fs::remove_file(mountpoint.join("gone")).expect("unlink");
    let mut names: Vec<String> = std::fs::read_dir(&mountpoint)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["b"]);
    fs.cut().expect("cut");
    assert_eq!(std::fs::read_to_string(backing.join("b")).expect("read"), "0123");
    assert!(!backing.join("a").exists() && !backing.join("gone").exists());
}
