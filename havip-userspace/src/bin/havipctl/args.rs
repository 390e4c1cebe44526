//! Command-line arguments of `havipctl` (clap derive).

//! Every operation's arguments are the operation's own struct
//! (`havip::model::op`), so the CLI, the API and the config agree.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use havip::model::{
    AssociateEip, AssociateHaVip, CreateEip, CreateEni, CreateHaVip, CreateInstance, CreateRoute,
    CreateUplink, CreateVSwitch, CreateVpc, DeleteEip, DeleteEni, DeleteHaVip, DeleteInstance,
    DeleteRoute, DeleteUplink, DeleteVSwitch, DeleteVpc, ModifyEni, ModifyHaVipAttribute,
    SetInitialOwner, SetQuota, UnassociateEip, UnassociateHaVip,
};

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

#[derive(Debug, Subcommand)]
pub enum HavipCmd {
    /// CreateHaVip: explicit address or allocated from the vSwitch.
    Create(CreateHaVip),
    /// DeleteHaVip (refused while bound, fronted by an EIP or a route next hop).
    Delete(DeleteHaVip),
    /// DescribeHaVips: all HaVips.
    List,
    /// DescribeHaVips: one HaVip in detail.
    Describe { id: String },
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
    Create(CreateEip),
    Delete(DeleteEip),
    List,
    /// Front a HaVip with this EIP.
    Associate(AssociateEip),
    Unassociate(UnassociateEip),
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    Create(CreateRoute),
    Delete(DeleteRoute),
    List,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    Get,
    Set(SetQuota),
}

#[derive(Debug, Subcommand)]
pub enum VpcCmd {
    Create(CreateVpc),
    /// Refused while the VPC has vSwitches or route entries.
    Delete(DeleteVpc),
    List,
}

#[derive(Debug, Subcommand)]
pub enum VswitchCmd {
    Create(CreateVSwitch),
    /// Refused while instances, ENIs, uplinks or HaVips are in it.
    Delete(DeleteVSwitch),
    List,
}

#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    Create(CreateInstance),
    /// Its bindings go; its primary ENI is deleted, other ENIs detached.
    Delete(DeleteInstance),
    List,
}

#[derive(Debug, Subcommand)]
pub enum EniCmd {
    Create(CreateEni),
    /// Its bindings go (a primary ENI goes with its instance).
    Delete(DeleteEni),
    /// Change the host interface.
    Modify(ModifyEni),
    List,
}

#[derive(Debug, Subcommand)]
pub enum UplinkCmd {
    Create(CreateUplink),
    Delete(DeleteUplink),
    List,
}
