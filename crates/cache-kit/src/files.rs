//! File helpers for disk backends: what a crash-safe store does again and again.

use std::io;
use std::path::{Path, PathBuf};

/// Removes the file at `path`; a file that is already gone counts as removed.
pub fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Removes the directory at `path` with everything in it; one that is already gone counts
/// as removed.
pub fn remove_dir_all_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Renames `from` to `to` (atomically replacing any file there), creating `to`'s directory
/// when it is missing.
pub fn rename_into_place(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(from, to)
        }
        other => other,
    }
}

/// Flushes the directory `dir` itself to disk, so the names renamed into it or removed
/// from it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Flushes the directory that holds `path` (see [`sync_dir`]); nothing when `path` has no
/// parent.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Every regular file below `root`, at any depth (none when `root` does not exist; a
/// directory that cannot be read is passed over). Links are not followed.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_what_is_gone_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        remove_file_if_present(&file).unwrap();
        assert!(!file.exists());
        remove_file_if_present(&file).unwrap();
        remove_dir_all_if_present(&dir.path().join("none")).unwrap();
        // A directory is not a file: that error is reported.
        assert!(remove_file_if_present(dir.path()).is_err());
    }

    #[test]
    fn rename_into_place_creates_the_directory_and_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("tmp"), dir.path().join("a/b/final"));
        std::fs::write(&from, b"one").unwrap();
        rename_into_place(&from, &to).unwrap();
        std::fs::write(&from, b"two").unwrap();
        rename_into_place(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"two");
        assert!(!from.exists());
        sync_parent_dir(&to).unwrap();
        sync_parent_dir(Path::new("relative")).unwrap();
    }

    #[test]
    fn files_under_lists_every_depth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("x/y")).unwrap();
        std::fs::write(dir.path().join("top"), b"12").unwrap();
        std::fs::write(dir.path().join("x/y/deep"), b"345").unwrap();
        let mut files = files_under(dir.path());
        files.sort();
        assert_eq!(files, [dir.path().join("top"), dir.path().join("x/y/deep")]);
        assert!(files_under(&dir.path().join("missing")).is_empty());
    }
}
