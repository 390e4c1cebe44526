//! Embeds the bench-only XDP programs (`havip-bench-progs`, built next to the
//! product's object by `cargo xtask build`) for `havip-bench`. Without them an
//! empty object is embedded and the benchmark fails with a clear error.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let bench = manifest.join("../havip-ebpf/target/bpfel-unknown-none/release/havip-bench-progs");
    println!("cargo:rerun-if-changed={}", bench.display());
    let out =
        PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("havip-bench-progs.bpf.o");
    let bytes = fs::read(&bench).unwrap_or_else(|_| {
        println!(
            "cargo:warning=no bench programs at {}: run `cargo xtask build` first; havip-bench will refuse to run",
            bench.display()
        );
        Vec::new()
    });
    if let Err(e) = fs::write(&out, bytes) {
        panic!("cannot write {}: {e}", out.display());
    }
}
