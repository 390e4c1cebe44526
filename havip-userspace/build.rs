//! Embeds the XDP object built by `cargo xtask build` (or `HAVIP_EBPF_OBJECT`).
//! Without one, an empty object is embedded and loading fails with a clear error.

#[path = "build/embed.rs"]
mod embed;

fn main() {
    embed::embed(&embed::Object {
        name: "havip",
        env_override: Some("HAVIP_EBPF_OBJECT"),
        out_name: "havip.bpf.o",
        what: "eBPF object",
        consequence: "the agent will refuse to load",
    });
}
