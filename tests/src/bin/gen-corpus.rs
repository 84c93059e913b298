//! Writes the seed corpora of the fuzz targets.
//!
//! `cargo run -p userlane-tests --bin gen-corpus [DIR]` (default: the
//! repository's `fuzz/corpus`) writes `DIR/state_machine/` (each file a
//! postcard `Vec<Op>`) and `DIR/decode_external/`. Existing files of the same
//! name are replaced, others are kept.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus"),
        PathBuf::from,
    );
    let dir = root.join("decode_external");
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in userlane_tests::corpus::external_seeds() {
        std::fs::write(dir.join(name), &bytes)?;
        println!("decode_external/{name}: {} bytes", bytes.len());
    }
    let dir = root.join("state_machine");
    std::fs::create_dir_all(&dir)?;
    for (name, ops) in userlane_tests::corpus::seeds() {
        let bytes = userlane_tests::ops::encode(&ops);
        std::fs::write(dir.join(name), &bytes)?;
        println!(
            "state_machine/{name}: {} operations, {} bytes",
            ops.len(),
            bytes.len()
        );
    }
    Ok(())
}
