//! The documents retrieval runs over: a folder read recursively, or the embedded sample.

use std::path::Path;

use anyhow::Context;

include!(concat!(env!("OUT_DIR"), "/embedded_corpus.rs"));

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Path relative to the documents folder, with `/` separators.
    pub id: String,
    pub text: String,
}

/// Reads every UTF-8 text file below `dir` (recursively, each file once), or the
/// embedded sample corpus when `dir` is `None`. What cannot be read (a symlink
/// loop, a broken link, a special file, a file that is not UTF-8 text) is skipped
/// with one warning naming it.
pub fn load_documents(dir: Option<&Path>) -> anyhow::Result<Vec<Document>> {
    let Some(dir) = dir else {
        return Ok(EMBEDDED_CORPUS
            .iter()
            .map(|(id, text)| Document {
                id: (*id).to_owned(),
                text: (*text).to_owned(),
            })
            .collect());
    };
    let listing =
        super::walk::files_below(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for skipped in &listing.skipped {
        tracing::warn!(path = %skipped.path.display(), reason = %skipped.reason, "document skipped");
    }
    Ok(listing
        .files
        .into_iter()
        .filter_map(|(id, path)| match std::fs::read_to_string(&path) {
            Ok(text) => Some(Document { id, text }),
            Err(error) => {
                tracing::warn!(path = %path.display(), reason = %error, "document skipped");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_recursively_with_slash_ids_and_skips_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("top.txt"), "top").unwrap();
        std::fs::write(dir.path().join("a/b/deep.cbl"), "deep").unwrap();
        std::fs::write(dir.path().join("a/blob.bin"), [0xff, 0xfe, 0x00]).unwrap();
        let ids: Vec<_> = load_documents(Some(dir.path()))
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["a/b/deep.cbl", "top.txt"]);
    }

    #[test]
    fn embedded_sample_contains_lonpf2() {
        let docs = load_documents(None).unwrap();
        assert!(docs.iter().any(|d| d.id.ends_with("LONPF2.cbl")));
    }
}
