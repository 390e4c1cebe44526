//! What both binaries share on the command line: the log set-up
//! (`--log-format`, `HAVIP_LOG_FORMAT`, `RUST_LOG`) and the generation of
//! shell completions and man pages (`cargo xtask package` runs the hidden
//! `gen-docs` subcommand of each binary).

use std::{io::IsTerminal, path::Path};

use clap::ValueEnum;
use clap_complete::Shell;

/// Format of the log records on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per record (for journald/log shippers).
    Json,
}

/// Installs the global tracing subscriber: level filter from `RUST_LOG`
/// (default `info`; e.g. `RUST_LOG=havip=debug`), records to stderr in
/// `format`, ANSI colours only when stderr is a terminal.
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Writes completions (bash, zsh, fish) and man pages (one per command and
/// subcommand) of `cmd` under `out/completions` and `out/man`.
///
/// # Errors
/// I/O errors.
pub fn write_docs(mut cmd: clap::Command, out: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    let comp = out.join("completions");
    let man = out.join("man");
    std::fs::create_dir_all(&comp)?;
    std::fs::create_dir_all(&man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, &comp)?;
    }
    cmd.build();
    man_pages(&cmd, &man)
}

/// One man page per command, recursively, leaving out hidden subcommands
/// and clap's `help` subcommand.
fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(sub, dir)?;
    }
    clap_mangen::Man::new(cmd.clone()).generate_to(dir)?;
    Ok(())
}
