//! Command-line arguments of `havipctl` (clap derive).

use std::{net::Ipv4Addr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use havip::model::{Ipv4Cidr, MacAddr};

/// Drive the havip agent's API: HaVips, EIPs, routes, quotas and the
/// VPC resources they live in.
#[derive(Debug, Parser)]
#[command(name = "havipctl", version)]
pub struct Cli {
    /// Unix socket of the agent's API.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "url")]
    pub socket: Option<PathBuf>,
    /// TCP address of the agent's API, e.g. http://127.0.0.1:7878.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Print machine-readable JSON instead of tables.
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
}

/// An instance or an ENI (exactly one).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct MemberArgs {
    /// Instance id.
    #[arg(long)]
    pub instance: Option<String>,
    /// ENI id.
    #[arg(long)]
    pub eni: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum HavipCmd {
    /// CreateHaVip: explicit address or allocated from the vSwitch.
    Create {
        #[arg(long)]
        vswitch: String,
        #[arg(long)]
        address: Option<Ipv4Addr>,
        /// Resource id (allocated when absent).
        #[arg(long)]
        id: Option<String>,
    },
    /// DeleteHaVip (refused while bound, fronted by an EIP or a route next hop).
    Delete { id: String },
    /// DescribeHaVips: all HaVips.
    List,
    /// DescribeHaVips: one HaVip in detail.
    Describe { id: String },
    /// AssociateHaVip with an instance or an ENI.
    Associate {
        id: String,
        #[command(flatten)]
        member: MemberArgs,
    },
    /// UnassociateHaVip from an instance or an ENI.
    Unassociate {
        id: String,
        #[command(flatten)]
        member: MemberArgs,
    },
    /// Set (or clear) the member installed as owner while there is none.
    SetMaster {
        id: String,
        #[arg(long, required_unless_present = "clear")]
        member: Option<String>,
        #[arg(long, conflicts_with = "member")]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EipCmd {
    Create {
        #[arg(long)]
        address: Ipv4Addr,
        #[arg(long)]
        id: Option<String>,
    },
    Delete {
        id: String,
    },
    List,
    /// Front a HaVip with this EIP.
    Associate {
        id: String,
        #[arg(long)]
        havip: String,
    },
    Unassociate {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    Create {
        #[arg(long)]
        vpc: String,
        #[arg(long)]
        destination: Ipv4Cidr,
        /// HaVip id.
        #[arg(long)]
        next_hop: String,
        #[arg(long)]
        id: Option<String>,
    },
    Delete {
        id: String,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    Get,
    Set {
        #[arg(long)]
        havips_per_account: Option<usize>,
        #[arg(long)]
        havips_per_vpc: Option<usize>,
        #[arg(long)]
        havip_routes_per_vpc: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum VpcCmd {
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        cidr: Ipv4Cidr,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum VswitchCmd {
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        vpc: String,
        #[arg(long)]
        cidr: Ipv4Cidr,
        #[arg(long)]
        gateway_mac: MacAddr,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        vswitch: String,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum EniCmd {
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        vswitch: String,
        #[arg(long)]
        mac: MacAddr,
        /// Host-side interface.
        #[arg(long)]
        interface: String,
        #[arg(long)]
        instance: Option<String>,
        #[arg(long)]
        primary: bool,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum UplinkCmd {
    Create {
        #[arg(long)]
        interface: String,
        #[arg(long)]
        vswitch: String,
    },
    List,
}
