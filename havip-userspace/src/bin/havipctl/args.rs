//! Command-line arguments of `havipctl` (clap derive).

//! Every operation's arguments are the operation's own struct
//! (`havip::model::op`), so the CLI, the API and the config agree.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use havip::model::{
    AssociateEip, AssociateHaVip, CreateEip, CreateEni, CreateHaVip, CreateInstance, CreateRoute,
    CreateUplink, CreateVSwitch, CreateVpc, DeleteEip, DeleteEni, DeleteHaVip, DeleteInstance,
    DeleteRoute, DeleteUplink, DeleteVSwitch, DeleteVpc, ModifyEni, ModifyHaVipAttribute, Op,
    SetInitialOwner, SetQuota, UnassociateEip, UnassociateHaVip,
};

/// Drive the havip agent's API: HaVips, EIPs, routes, quotas and the
/// VPC resources they live in.
#[derive(Debug, Parser)]
#[command(
    name = "havipctl",
    version,
    after_help = "Exit codes: 0 ok; 1 refused by the agent (or `status`: not ready); \
                  2 usage error; 3 agent unreachable.\n\
                  With --json, errors are one JSON object on stderr: \
                  {\"error\": {\"code\": ..., \"message\": ..., \"exit\": N}}."
)]
pub struct Cli {
    /// Unix socket of the agent's API.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "HAVIP_SOCKET",
        default_value = havip::paths::API_SOCKET
    )]
    pub socket: PathBuf,
    /// TCP address of the agent's API, e.g. http://127.0.0.1:7878 (wins over
    /// --socket).
    #[arg(long, global = true, value_name = "URL", env = "HAVIP_URL")]
    pub url: Option<String>,
    /// Print machine-readable JSON instead of tables (errors too).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// High-Availability Virtual IPs.
    #[command(subcommand)]
    Havip(HavipCmd),
    /// Elastic IPs fronting HaVips.
    #[command(subcommand)]
    Eip(EipCmd),
    /// VPC route entries whose next hop is a HaVip.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Quotas (HaVips per account/VPC, HaVip routes per VPC).
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// VPCs.
    #[command(subcommand)]
    Vpc(VpcCmd),
    /// vSwitches (subnets).
    #[command(subcommand)]
    Vswitch(VswitchCmd),
    /// Instances.
    #[command(subcommand)]
    Instance(InstanceCmd),
    /// Elastic network interfaces.
    #[command(subcommand)]
    Eni(EniCmd),
    /// Host uplinks.
    #[command(subcommand)]
    Uplink(UplinkCmd),
    /// Dump the agent's whole control-plane state (JSON).
    State,
    /// The agent's events (owner changes, refused claims, API changes), one
    /// per line; with --json the JSON lines as the agent sends them.
    Events {
        /// Keep following (reconnecting when the agent closes the stream)
        /// until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Is the agent ready (data plane loaded, every port attached, store
    /// reachable)? Exit 0 ready, 1 not ready, 3 unreachable.
    Status,
    /// This host's view of the cluster (etcd store): connected or not, the
    /// etcd and local state revisions, live and down hosts, local claims not
    /// yet published. With the embedded store: "single host".
    Cluster,
    /// Write shell completions and man pages under DIR (packaging).
    #[command(hide = true)]
    GenDocs {
        /// Output directory (completions/ and man/ are created in it).
        #[arg(value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum HavipCmd {
    /// CreateHaVip: explicit address or allocated from the vSwitch.
    Create(CreateHaVip),
    /// DeleteHaVip (refused while bound, fronted by an EIP or a route next hop).
    Delete(DeleteHaVip),
    /// DescribeHaVips: all HaVips.
    List,
    /// DescribeHaVips: one HaVip in detail.
    Describe {
        /// HaVip id.
        id: String,
    },
    /// Owner history of one HaVip (oldest first, the last 100 changes).
    History {
        /// HaVip id.
        id: String,
    },
    /// ModifyHaVipAttribute: name and description ("" clears).
    Modify(ModifyHaVipAttribute),
    /// AssociateHaVip with an instance or an ENI.
    Associate(AssociateHaVip),
    /// UnassociateHaVip from an instance or an ENI (the owner only with --force).
    Unassociate(UnassociateHaVip),
    /// Set (or, without --member, clear) the member installed as owner
    /// while there is none (the product's SetInitialMaster).
    #[command(alias = "set-master")]
    SetOwner(SetInitialOwner),
}

#[derive(Debug, Subcommand)]
pub enum EipCmd {
    /// Create one.
    Create(CreateEip),
    /// Delete one.
    Delete(DeleteEip),
    /// List them.
    List,
    /// Front a HaVip with this EIP.
    Associate(AssociateEip),
    /// Unassociate from its HaVip.
    Unassociate(UnassociateEip),
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Create one.
    Create(CreateRoute),
    /// Delete one.
    Delete(DeleteRoute),
    /// List them.
    List,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Show the quotas.
    Get,
    /// Set quotas (keys given only).
    Set(SetQuota),
}

#[derive(Debug, Subcommand)]
pub enum VpcCmd {
    /// Create one.
    Create(CreateVpc),
    /// Refused while the VPC has vSwitches or route entries.
    Delete(DeleteVpc),
    /// List them.
    List,
}

#[derive(Debug, Subcommand)]
pub enum VswitchCmd {
    /// Create one.
    Create(CreateVSwitch),
    /// Refused while instances, ENIs, uplinks or HaVips are in it.
    Delete(DeleteVSwitch),
    /// List them.
    List,
}

#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    /// Create one.
    Create(CreateInstance),
    /// Its bindings go; its primary ENI is deleted, other ENIs detached.
    Delete(DeleteInstance),
    /// List them.
    List,
}

#[derive(Debug, Subcommand)]
pub enum EniCmd {
    /// Create one.
    Create(CreateEni),
    /// Its bindings go (a primary ENI goes with its instance).
    Delete(DeleteEni),
    /// Change the host interface.
    Modify(ModifyEni),
    /// List them.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UplinkCmd {
    /// Create one.
    Create(CreateUplink),
    /// Delete one.
    Delete(DeleteUplink),
    /// List them.
    List,
}

/// `into_op` of the commands that either carry an operation or list
/// (`List`): the operation, or `None` to list.
macro_rules! op_or_list {
    ($($cmd:ident: $($variant:ident),+;)*) => {$(
        impl $cmd {
            pub fn into_op(self) -> Option<Op> {
                match self {
                    $($cmd::$variant(op) => Some(op.into()),)+
                    $cmd::List => None,
                }
            }
        }
    )*};
}

op_or_list! {
    EipCmd: Create, Delete, Associate, Unassociate;
    RouteCmd: Create, Delete;
    VpcCmd: Create, Delete;
    VswitchCmd: Create, Delete;
    InstanceCmd: Create, Delete;
    EniCmd: Create, Delete, Modify;
    UplinkCmd: Create, Delete;
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every subcommand and every argument of `cmd` (recursively) without
    /// help text, as `path: what`.
    fn missing_help(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path}: argument {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                out.push(format!("{p}: subcommand"));
            }
            missing_help(sub, &p, out);
        }
    }

    #[test]
    fn every_subcommand_and_argument_has_help() {
        let mut cmd = Cli::command();
        cmd.build();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        missing_help(&cmd, "havipctl", &mut missing);
        assert!(
            missing.is_empty(),
            "{} without help:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }

    #[test]
    fn default_socket_and_env_are_shown() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(havip::paths::API_SOCKET), "{help}");
        assert!(help.contains("HAVIP_SOCKET"), "{help}");
    }
}
