//! `cutfs BACKING MOUNTPOINT`: mounts [`baton_testkit::cutfs`] by hand, to try a program on it;
//! Enter (or the end of standard input) cuts the power: unsynced writes are dropped, the file
//! system unmounts, and what was lost is printed.

fn main() -> std::process::ExitCode {
    #[cfg(target_os = "linux")]
    {
        let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
        let [backing, mountpoint] = args.as_slice() else {
            eprintln!("usage: cutfs BACKING MOUNTPOINT");
            return std::process::ExitCode::from(2);
        };
        let fs = match baton_testkit::cutfs::CutFs::mount(backing, mountpoint) {
            Ok(fs) => fs,
            Err(e) => {
                eprintln!("cutfs: cannot mount {} at {}: {e}", backing.display(), mountpoint.display());
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("cutfs: {} on {}; press Enter to cut the power", backing.display(), mountpoint.display());
        let _ = std::io::stdin().read_line(&mut String::new());
        match fs.cut() {
            Ok(lost) => println!("cut: {} unsynced bytes in {} files dropped", lost.bytes, lost.files),
            Err(e) => {
                eprintln!("cutfs: the writes are dropped, but unmounting failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        std::process::ExitCode::SUCCESS
    }
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("cutfs runs on Linux only");
        std::process::ExitCode::FAILURE
    }
}
