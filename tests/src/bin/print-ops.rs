//! Prints a corpus entry or fuzzer artifact as readable operations.
//!
//! `cargo run -p userlane-tests --bin print-ops -- FILE...` decodes each file
//! as the `state_machine` fuzz target does (a postcard `Vec<Op>`, leniently),
//! replays it against the core and the model, and prints every operation with
//! the calls it made and what the core returned, then either "ok" or the
//! first divergence. Exits 1 if any file diverges.

use userlane_tests::harness::Harness;
use userlane_tests::ops::{decode, decode_lenient};

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: print-ops FILE...");
        std::process::exit(2);
    }
    let mut failed = false;
    for file in files {
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: {e}");
                failed = true;
                continue;
            }
        };
        let ops = decode_lenient(&bytes);
        let strict = if decode(&bytes).is_ok() {
            "a complete postcard Vec<Op>"
        } else {
            "decoded leniently: only the valid prefix"
        };
        println!(
            "== {file}: {} bytes, {} operations ({strict})",
            bytes.len(),
            ops.len()
        );
        let mut h = Harness::new().with_trace();
        let mut result = h.check();
        for (i, op) in ops.iter().enumerate() {
            if result.is_err() {
                break;
            }
            println!("{i:4}  {op:?}");
            result = h.apply(op).and_then(|()| h.check());
            for line in h.take_trace() {
                println!("        {line}");
            }
        }
        match result {
            Ok(()) => println!("ok: core and model agree, every invariant holds"),
            Err(what) => {
                println!("FAILED: {what}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
