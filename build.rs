//! Embeds the sample corpus (`corpus/`) in the binary, so the service answers out of
//! the box from any working directory when `RAG_DOCS_DIR` is unset.

use std::path::Path;
use std::{env, fs};

#[path = "src/answer/walk.rs"]
mod walk;

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("corpus");
    println!("cargo:rerun-if-changed={}", root.display());
    let listing = walk::files_below(&root).expect("corpus/ is readable");
    for skipped in &listing.skipped {
        println!(
            "cargo:warning=corpus: skipped {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    let mut code = String::from("pub(crate) static EMBEDDED_CORPUS: &[(&str, &str)] = &[\n");
    for (id, path) in listing.files {
        println!("cargo:rerun-if-changed={}", path.display());
        if fs::read_to_string(&path).is_ok() {
            code.push_str(&format!(
                "    ({id:?}, include_str!({:?})),\n",
                path.display().to_string()
            ));
        }
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("embedded_corpus.rs");
    fs::write(out, code).expect("write the embedded corpus list");
}
