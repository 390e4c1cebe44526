//! havip-agent: runs the HaVip data plane on a hypervisor.

#[path = "havip-agent/check.rs"]
mod check;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use havip::{
    agent,
    cli::{self, LogFormat},
    paths,
};

#[derive(Parser)]
#[command(
    name = "havip-agent",
    version,
    about = "havip agent: XDP data plane for High-Availability Virtual IPs",
    after_help = "Logs go to stderr; RUST_LOG sets the level filter (default info, e.g. RUST_LOG=havip=debug).\n\
                  Exit codes: 0 ok; 1 error (for `check`: invalid config); 2 usage or I/O error."
)]
struct Cli {
    /// Run inside this named network namespace (/run/netns/NAME). Only the
    /// network namespace changes, so bpffs pins stay the host's.
    #[arg(long, global = true, value_name = "NAME")]
    netns: Option<String>,
    /// Log record format on stderr.
    #[arg(long, global = true, value_enum, env = "HAVIP_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: seed the store from the config, attach, reconcile, serve the API.
    Run {
        /// The TOML config (schema: havip.toml(5) / the package's default config).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Override [agent].pin_dir.
        #[arg(long, value_name = "DIR")]
        pin_dir: Option<PathBuf>,
        /// Override [agent].api_socket.
        #[arg(long, value_name = "PATH")]
        api_socket: Option<PathBuf>,
        /// Override [agent].state_db.
        #[arg(long, value_name = "PATH")]
        state_db: Option<PathBuf>,
        /// Detach and unpin everything on exit (default: keep forwarding).
        #[arg(long)]
        teardown_on_exit: bool,
    },
    /// Validate a config with no side effects: syntax, values, and the seed
    /// planned over the store (opened read-only) or an empty state. Exit 0
    /// valid, 1 invalid, 2 usage or I/O error.
    Check {
        /// The TOML config to check.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Plan over this store instead of [agent].state_db (a path that does
        /// not exist: an empty state).
        #[arg(long, value_name = "PATH")]
        state_db: Option<PathBuf>,
        /// Print nothing when the config is valid.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show HaVips, owners and counters from the pinned maps.
    Status {
        /// bpffs directory of the pinned maps.
        #[arg(long, default_value = paths::PIN_DIR, value_name = "DIR")]
        pin_dir: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Detach from every interface and unpin every map (stops forwarding).
    Teardown {
        /// bpffs directory of the pinned maps.
        #[arg(long, default_value = paths::PIN_DIR, value_name = "DIR")]
        pin_dir: PathBuf,
    },
    /// Write shell completions and man pages under DIR (packaging).
    #[command(hide = true)]
    GenDocs {
        /// Output directory (completions/ and man/ are created in it).
        #[arg(value_name = "DIR")]
        out: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    cli::init_logs(cli.log_format);
    if let Command::Check {
        config,
        state_db,
        quiet,
    } = &cli.command
    {
        std::process::exit(check::run(config, state_db.clone(), *quiet));
    }
    if let Err(e) = real_main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
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
        Command::Check { .. } => Ok(()),
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
        Command::GenDocs { out } => cli::write_docs(Cli::command(), &out)
            .with_context(|| format!("writing docs under {}", out.display())),
    }
}
