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

/// Reads every UTF-8 text file below `dir` (recursively; binary files are skipped),
/// or the embedded sample corpus when `dir` is `None`.
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
    let files =
        super::walk::files_below(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    Ok(files
        .into_iter()
        .filter_map(|(id, path)| {
            // Binary files are not documents.
            let text = std::fs::read_to_string(path).ok()?;
            Some(Document { id, text })
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
