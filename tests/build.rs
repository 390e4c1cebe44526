//! Embeds the bench-only XDP programs (`havip-bench-progs`, built next to the
//! product's object by `cargo xtask build`) for `havip-bench`. Without them an
//! empty object is embedded and the benchmark fails with a clear error.

#[path = "../havip-userspace/build/embed.rs"]
mod embed;

fn main() {
    embed::embed(&embed::Object {
        name: "havip-bench-progs",
        env_override: None,
        out_name: "havip-bench-progs.bpf.o",
        what: "bench programs",
        consequence: "havip-bench will refuse to run",
    });
}
