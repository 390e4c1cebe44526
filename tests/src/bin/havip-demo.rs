//! havip-demo: the self-contained demo that `cargo xtask build-and-run` runs.
//! A client and two instances on network namespaces, the real `havip-agent`
//! in the host namespace: traffic follows the master, an ARP claim moves it,
//! a spoofed claim is refused. Needs root; cleans up (also on Ctrl-C).

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "havip-demo",
    about = "Run havip-agent on a demo topology of network namespaces"
)]
struct Args {
    /// Keep the namespaces and the agent after the demo, until Ctrl-C.
    #[arg(long)]
    hold: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match havip_tests::demo::run(args.hold) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
