//! Shared by the build scripts of `havip-userspace` and `tests`: copies an
//! eBPF object built by `cargo xtask build` into `OUT_DIR` for
//! `include_bytes_aligned!`, or an empty one with a warning when it is
//! missing (loading it then fails with a clear error).

use std::{env, fs, path::PathBuf};

/// What to embed: the object and how a missing one is reported.
pub struct Object<'a> {
    /// File name under `havip-ebpf/target/bpfel-unknown-none/release`.
    pub name: &'a str,
    /// Environment variable that names another object, if any.
    pub env_override: Option<&'a str>,
    /// Name of the copy in `OUT_DIR`.
    pub out_name: &'a str,
    /// The warning's wording: "no {what} at <path>: run `cargo xtask
    /// build` first; {consequence}".
    pub what: &'a str,
    pub consequence: &'a str,
}

/// Copies `object` into `OUT_DIR` (empty, with a cargo warning, when it
/// does not exist).
pub fn embed(object: &Object<'_>) {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let default = manifest
        .join("../havip-ebpf/target/bpfel-unknown-none/release")
        .join(object.name);
    let path = match object.env_override {
        Some(var) => {
            println!("cargo:rerun-if-env-changed={var}");
            env::var(var).map(PathBuf::from).unwrap_or(default)
        }
        None => default,
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join(object.out_name);
    let bytes = fs::read(&path).unwrap_or_else(|_| {
        println!(
            "cargo:warning=no {} at {}: run `cargo xtask build` first; {}",
            object.what,
            path.display(),
            object.consequence
        );
        Vec::new()
    });
    if let Err(e) = fs::write(&out, bytes) {
        panic!("cannot write {}: {e}", out.display());
    }
}
