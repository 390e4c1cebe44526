//! havip-agent: runs the HaVip data plane on a hypervisor.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use havip::{agent, paths};

#[derive(Parser)]
#[command(
    version,
    about = "havip agent: XDP data plane for High-Availability Virtual IPs"
)]
struct Cli {
    /// Run inside this named network namespace (/run/netns/NAME). Only the
    /// network namespace changes, so bpffs pins stay the host's.
    #[arg(long, global = true)]
    netns: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: seed the store from the config, attach, reconcile, serve the API.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Override [agent].pin_dir.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Override [agent].api_socket.
        #[arg(long)]
        api_socket: Option<PathBuf>,
        /// Override [agent].state_db.
        #[arg(long)]
        state_db: Option<PathBuf>,
        /// Detach and unpin everything on exit (default: keep forwarding).
        #[arg(long)]
        teardown_on_exit: bool,
    },
    /// Check a config file: parse it, check the API settings and plan its
    /// seed against the store opened read-only (nothing is written).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Override [agent].state_db.
        #[arg(long)]
        state_db: Option<PathBuf>,
    },
    /// Show HaVips, owners and counters from the pinned maps (never opens
    /// the store).
    Status {
        #[arg(long, default_value = paths::PIN_DIR)]
        pin_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Detach from every interface and unpin every map (stops forwarding).
    Teardown {
        #[arg(long, default_value = paths::PIN_DIR)]
        pin_dir: PathBuf,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Before any thread exists, so every runtime thread inherits it.
    if let Some(ns) = &cli.netns {
        havip::netns::enter_named(ns).with_context(|| format!("entering netns {ns}"))?;
    }
    match cli.command {
        Command::Run {
            config,
            pin_dir,
            api_socket,
            state_db,
            teardown_on_exit,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(agent::run(
                config,
                agent::Overrides {
                    pin_dir,
                    api_socket,
                    state_db,
                    teardown_on_exit,
                },
            ))
        }
        Command::Check { config, state_db } => {
            match havip::config::check(&config, state_db.as_deref())? {
                havip::config::CheckOutcome::Seeded(r) => println!(
                    "config OK: {} to create, {} kept, {} to modify",
                    r.created.len(),
                    r.kept.len(),
                    r.modified.len()
                ),
                havip::config::CheckOutcome::NoStore(r) => {
                    println!("config OK (no store yet): {} to create", r.created.len())
                }
                havip::config::CheckOutcome::StoreInUse => println!(
                    "config OK; the store is in use by a running agent, seed not checked against it"
                ),
            }
            Ok(())
        }
        Command::Status { pin_dir, json } => {
            let status = havip::status::read(&pin_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{status}");
            }
            Ok(())
        }
        Command::Teardown { pin_dir } => {
            havip::dataplane::loader::teardown(&pin_dir)
                .with_context(|| format!("tearing down {}", pin_dir.display()))?;
            println!("detached and unpinned {}", pin_dir.display());
            Ok(())
        }
    }
}
