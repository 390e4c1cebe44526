//! `havipctl`: command-line client of the havip agent's API.
//!
//! Errors print `error: <code>: <message>` on stderr (with `--json`: one
//! JSON object) and exit 1 when the agent refused, 3 when it cannot be
//! reached; usage errors exit 2 (clap).

#[path = "havipctl/args.rs"]
mod args;
#[path = "havipctl/cluster.rs"]
mod cluster;
#[path = "havipctl/eip.rs"]
mod eip;
#[path = "havipctl/havip.rs"]
mod havip_cmd;
#[path = "havipctl/output.rs"]
mod output;
#[path = "havipctl/quota.rs"]
mod quota;
#[path = "havipctl/route.rs"]
mod route;
#[path = "havipctl/setup.rs"]
mod setup;
#[path = "havipctl/status.rs"]
mod status;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use havip::{
    api::{Client, ClientError},
    control::history::Event,
};

use crate::{
    args::{Cli, Command},
    output::Output,
};

/// The agent refused the request (or `status`: not ready).
const EXIT_REFUSED: u8 = 1;
/// The agent cannot be reached.
const EXIT_UNREACHABLE: u8 = 3;

fn run(cli: Cli) -> Result<ExitCode, ClientError> {
    let client = match &cli.url {
        Some(url) => Client::from_url(url)?,
        None => Client::unix(&cli.socket),
    };
    let out = Output { json: cli.json };
    match cli.command {
        Command::Havip(c) => havip_cmd::run(&client, out, c),
        Command::Eip(c) => eip::run(&client, out, c),
        Command::Route(c) => route::run(&client, out, c),
        Command::Quota(c) => quota::run(&client, out, c),
        Command::Vpc(c) => setup::vpc(&client, out, c),
        Command::Vswitch(c) => setup::vswitch(&client, out, c),
        Command::Instance(c) => setup::instance(&client, out, c),
        Command::Eni(c) => setup::eni(&client, out, c),
        Command::Uplink(c) => setup::uplink(&client, out, c),
        Command::State => {
            let s = client.state()?;
            // The state is only meaningful as JSON.
            Output { json: true }.show(&s, |_| String::new());
            Ok(())
        }
        Command::Events { follow } => events(&client, out, follow),
        Command::Cluster => cluster::run(&client, out),
        Command::Status => {
            return Ok(if status::run(&client, out)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REFUSED)
            })
        }
        Command::GenDocs { out } => {
            return Ok(match havip::cli::write_docs(Cli::command(), &out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing docs under {}: {e}", out.display());
                    ExitCode::FAILURE
                }
            })
        }
    }
    .map(|()| ExitCode::SUCCESS)
}

/// `havipctl events [--follow]`: prints each event as it arrives (text, or
/// the JSON line with `--json`); keep-alives are not printed.
fn events(client: &Client, out: Output, follow: bool) -> Result<(), ClientError> {
    loop {
        client.follow_events(|line| {
            match serde_json::from_str::<Event>(line) {
                Ok(Event::KeepAlive) => {}
                Ok(e) if !out.json => println!("{}", e.text()),
                // JSON, or an event this havipctl does not know: as sent.
                _ => println!("{line}"),
            }
            true
        })?;
        if !follow {
            return Ok(());
        }
        // The agent closed the stream (idle timeout, restart): reconnect.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn fail(json: bool, code: &str, message: &str, exit: u8) -> ExitCode {
    if json {
        let v = serde_json::json!({"error": {"code": code, "message": message, "exit": exit}});
        eprintln!("{v}");
    } else {
        eprintln!("error: {code}: {message}");
    }
    ExitCode::from(exit)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(code) => code,
        Err(ClientError::Api { code, message, .. }) => fail(json, &code, &message, EXIT_REFUSED),
        Err(e @ (ClientError::Connect { .. } | ClientError::Io(_))) => {
            fail(json, "Unavailable", &e.to_string(), EXIT_UNREACHABLE)
        }
        Err(e) => fail(json, "Client", &e.to_string(), EXIT_REFUSED),
    }
}
