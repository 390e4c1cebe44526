//! `havipctl`: command-line client of the havip agent's API.
//!
//! Errors print `error: <code>: <message>` on stderr and exit 1.

#[path = "havipctl/args.rs"]
mod args;
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

use std::process::ExitCode;

use clap::Parser;
use havip::api::{Client, ClientError};

use crate::{
    args::{Cli, Command},
    output::Output,
};

fn run(cli: Cli) -> Result<(), ClientError> {
    let client = match (&cli.url, &cli.socket) {
        (Some(url), _) => Client::from_url(url)?,
        (None, Some(path)) => Client::unix(path),
        (None, None) => Client::unix(havip::paths::API_SOCKET),
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
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Api { code, message, .. }) => {
            eprintln!("error: {code}: {message}");
            ExitCode::FAILURE
        }
        Err(e @ (ClientError::Connect { .. } | ClientError::Io(_))) => {
            eprintln!("error: Unavailable: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: Client: {e}");
            ExitCode::FAILURE
        }
    }
}
