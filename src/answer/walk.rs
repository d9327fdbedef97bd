//! Listing a documents folder. Shared by the library and `build.rs` (which embeds
//! the sample corpus), so both name documents the same way.

use std::io;
use std::path::{Path, PathBuf};

/// Every file below `root`, recursively, as (id, path) sorted by id; the id is the
/// path relative to `root` with `/` separators.
pub fn files_below(root: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    visit(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

fn visit(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            visit(&path, root, out)?;
        } else {
            let id = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((id, path));
        }
    }
    Ok(())
}
