//! havip-demo: the self-contained demo that `cargo xtask build-and-run` runs.
//! A client and two instances on network namespaces, the real `havip-agent`
//! in the host namespace: traffic follows the owner, an ARP claim moves it,
//! a spoofed claim is refused. `--hosts 2` (or 3): the multi-host demo (etcd,
//! one agent per host, the owner moving across hosts). Needs root; cleans
//! up (also on Ctrl-C).

use clap::Parser;

/// Run havip-agent on a demo topology of network namespaces.
#[derive(Parser, Debug)]
#[command(name = "havip-demo")]
struct Args {
    /// Keep the namespaces and the agent after the demo, until Ctrl-C.
    #[arg(long)]
    hold: bool,
    /// Hosts: 1 (default) is the single-host demo; 2 or 3 run the
    /// multi-host demo (etcd, one agent per host, members on h1 and h2,
    /// VXLAN in XDP between hosts).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    hosts: u8,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = if args.hosts == 1 {
        havip_tests::demo::run(args.hold)
    } else {
        havip_tests::demo::run_multihost(usize::from(args.hosts), args.hold)
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
