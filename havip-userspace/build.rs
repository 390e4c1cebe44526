//! Embeds the XDP object built by `cargo xtask build` (or `HAVIP_EBPF_OBJECT`).
//! Without one, an empty object is embedded and loading fails with a clear error.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let default = manifest.join("../havip-ebpf/target/bpfel-unknown-none/release/havip");
    let object = env::var("HAVIP_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or(default);
    println!("cargo:rerun-if-env-changed=HAVIP_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("havip.bpf.o");
    let bytes = fs::read(&object).unwrap_or_else(|_| {
        println!(
            "cargo:warning=no eBPF object at {}: run `cargo xtask build` first; the agent will refuse to load",
            object.display()
        );
        Vec::new()
    });
    if let Err(e) = fs::write(&out, bytes) {
        panic!("cannot write {}: {e}", out.display());
    }
}
