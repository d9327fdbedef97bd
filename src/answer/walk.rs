//! Listing a documents folder. Shared by the library and `build.rs` (which embeds
//! the sample corpus), so both name documents the same way. No logging here
//! (`build.rs` has none): what was skipped is returned for the caller to report.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// The regular files below a folder, each once.
pub struct Listing {
    /// (id, path) sorted by id; the id is the path relative to the root with `/`
    /// separators.
    pub files: Vec<(String, PathBuf)>,
    /// What could not be listed: symlink loops, broken links, unreadable folders,
    /// FIFOs and other special files, names that are not UTF-8.
    pub skipped: Vec<Skipped>,
}

pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Every regular file below `root`, following symlinks (a link back to an ancestor
/// is a loop: skipped, not followed). A file reached through several paths (a
/// symlink to a file listed elsewhere) is listed once, by its own path when that is
/// inside `root`, else by the first of its ids. Fails only when `root` itself
/// cannot be read.
pub fn files_below(root: &Path) -> io::Result<Listing> {
    let canonical_root = std::fs::canonicalize(root)?;
    let mut skipped = Vec::new();
    // Canonical path → (id, path) of each candidate, to keep one per file.
    let mut found: HashMap<PathBuf, Vec<(String, PathBuf)>> = HashMap::new();
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) if error.depth() == 0 => return Err(error.into()),
            Err(error) => {
                let path = error.path().unwrap_or(root).to_owned();
                skipped.push(Skipped {
                    path,
                    reason: error.to_string(),
                });
                continue;
            }
        };
        let file_type = entry.file_type();
        if file_type.is_dir() {
            continue;
        }
        let path = entry.into_path();
        if !file_type.is_file() {
            // Reading a FIFO would block start-up until someone writes to it.
            skipped.push(Skipped {
                path,
                reason: "not a regular file".into(),
            });
            continue;
        }
        let (Some(id), Ok(canonical)) = (id_of(&path, root), std::fs::canonicalize(&path)) else {
            skipped.push(Skipped {
                path,
                reason: "its name is not UTF-8, or it vanished while listed".into(),
            });
            continue;
        };
        found.entry(canonical).or_default().push((id, path));
    }
    let mut files: Vec<(String, PathBuf)> = found
        .into_iter()
        .filter_map(|(canonical, candidates)| {
            let own_id = id_of(&canonical, &canonical_root);
            candidates
                .into_iter()
                .min_by_key(|(id, _)| (own_id.as_ref() != Some(id), id.clone()))
        })
        .collect();
    files.sort();
    Ok(Listing { files, skipped })
}

/// `path` relative to `root` with `/` separators; `None` when it is not below
/// `root` or its name is not UTF-8.
fn id_of(path: &Path, root: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = path
        .strip_prefix(root)
        .ok()?
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn every_file_once_and_loops_broken_links_and_fifos_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("programs")).unwrap();
        std::fs::write(root.join("programs/PAY.cbl"), "pay").unwrap();
        symlink("..", root.join("programs/up")).unwrap(); // back to its parent: a loop
        symlink("programs", root.join("mirror")).unwrap(); // the same folder again
        symlink("programs/PAY.cbl", root.join("alias.cbl")).unwrap(); // the same file again
        symlink("missing.txt", root.join("broken")).unwrap();
        // A FIFO fails for root too; reading it would block forever.
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("queue"))
            .status()
            .unwrap();
        assert!(made.success());

        let listing = files_below(root).unwrap();
        let ids: Vec<&str> = listing.files.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["programs/PAY.cbl"], "listed by its own path, once");
        let mut skipped: Vec<String> = listing
            .skipped
            .iter()
            .map(|s| id_of(&s.path, root).unwrap())
            .collect();
        skipped.sort();
        assert_eq!(skipped, ["broken", "mirror/up", "programs/up", "queue"]);
        assert!(listing.skipped.iter().all(|s| !s.reason.is_empty()));
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(files_below(&dir.path().join("nope")).is_err());
    }
}
