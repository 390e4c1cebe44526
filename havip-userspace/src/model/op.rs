//! Every state-changing operation, one struct per operation.
//!
//! Each struct is the operation's only shape: the validation core takes it
//! ([`Op`]), it is the HTTP body (`POST /v1/ops` carries `{"op": "<name>",
//! ...fields}`; the REST paths decode into the same struct), the TOML seed
//! deserialises `[[vpc]]`, `[[eni]]`, ... into it, and `havipctl` parses its
//! arguments into it (`clap::Args`).

use std::net::Ipv4Addr;

use clap::{error::ErrorKind, Arg, ArgGroup, ArgMatches, Args, Command, FromArgMatches};
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    net::{Ipv4Cidr, MacAddr},
    resource::{BindingKind, ObservedOwner},
};

/// An IPv4 address whose parse error names the value (kept when the
/// struct is flattened into a config entry, where serde drops the key).
fn de_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| serde::de::Error::custom(format!("invalid IPv4 address {s:?}")))
}

fn de_opt_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    de_addr(d).map(Some)
}

/// What an operation binds or unbinds: an instance or an ENI. On the wire
/// `{"instance": id}` or `{"eni": id}`; on the command line `--instance ID`
/// or `--eni ID`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MemberRepr", into = "MemberRepr")]
pub struct Member {
    pub kind: BindingKind,
    pub id: String,
}

impl Member {
    /// An instance member.
    pub fn instance(id: impl Into<String>) -> Self {
        Member {
            kind: BindingKind::Instance,
            id: id.into(),
        }
    }

    /// An ENI member.
    pub fn eni(id: impl Into<String>) -> Self {
        Member {
            kind: BindingKind::Eni,
            id: id.into(),
        }
    }
}

/// Wire form of [`Member`]: exactly one of the two keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eni: Option<String>,
}

impl TryFrom<MemberRepr> for Member {
    type Error = String;

    fn try_from(r: MemberRepr) -> Result<Self, Self::Error> {
        match (r.instance, r.eni) {
            (Some(i), None) => Ok(Member::instance(i)),
            (None, Some(e)) => Ok(Member::eni(e)),
            _ => Err("give exactly one of \"instance\" or \"eni\"".to_owned()),
        }
    }
}

impl From<Member> for MemberRepr {
    fn from(m: Member) -> Self {
        match m.kind {
            BindingKind::Instance => MemberRepr {
                instance: Some(m.id),
                eni: None,
            },
            BindingKind::Eni => MemberRepr {
                instance: None,
                eni: Some(m.id),
            },
        }
    }
}

impl FromArgMatches for Member {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        match (m.get_one::<String>("instance"), m.get_one::<String>("eni")) {
            (Some(i), None) => Ok(Member::instance(i.clone())),
            (None, Some(e)) => Ok(Member::eni(e.clone())),
            _ => Err(clap::Error::raw(
                ErrorKind::MissingRequiredArgument,
                "give exactly one of --instance or --eni\n",
            )),
        }
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for Member {
    fn augment_args(cmd: Command) -> Command {
        cmd.arg(
            Arg::new("instance")
                .long("instance")
                .value_name("ID")
                .help("Instance id"),
        )
        .arg(Arg::new("eni").long("eni").value_name("ID").help("ENI id"))
        .group(
            ArgGroup::new("member")
                .args(["instance", "eni"])
                .required(true)
                .multiple(false),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// CreateVpc (`[[vpc]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct CreateVpc {
    /// VPC id.
    #[arg(long)]
    pub id: String,
    /// IPv4 CIDR block, e.g. 10.0.0.0/16.
    #[arg(long)]
    pub cidr: Ipv4Cidr,
}

/// DeleteVpc: refused while it has vSwitches or route entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct DeleteVpc {
    /// VPC id.
    pub id: String,
}

/// CreateVSwitch (`[[vswitch]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct CreateVSwitch {
    /// vSwitch id.
    #[arg(long)]
    pub id: String,
    /// VPC id.
    #[arg(long)]
    pub vpc: String,
    /// IPv4 CIDR block, e.g. 10.0.0.0/16.
    #[arg(long)]
    pub cidr: Ipv4Cidr,
    /// MAC of the vSwitch's gateway (source MAC of forwarded frames).
    #[arg(long)]
    pub gateway_mac: MacAddr,
    /// VXLAN network identifier (1..2^24) used between hosts.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// DeleteVSwitch: refused while instances, ENIs, uplinks or HaVips are in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct DeleteVSwitch {
    /// vSwitch id.
    pub id: String,
}

/// CreateInstance (`[[instance]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// Instance id.
    #[arg(long)]
    pub id: String,
    /// vSwitch id.
    #[arg(long)]
    pub vswitch: String,
}

/// DeleteInstance: its HaVip bindings go (the owner is cleared if it was
/// one of them), its primary ENI is deleted with it, other ENIs are detached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct DeleteInstance {
    /// Instance id.
    pub id: String,
}

/// CreateEni (`[[eni]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct CreateEni {
    /// ENI id.
    #[arg(long)]
    pub id: String,
    /// vSwitch id.
    #[arg(long)]
    pub vswitch: String,
    /// ENI's MAC address.
    #[arg(long)]
    pub mac: MacAddr,
    /// Host-side interface (tap/veth) of the ENI.
    #[arg(long)]
    #[serde(alias = "host_interface")]
    pub interface: String,
    /// Instance the ENI is attached to (none: detached).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The instance's primary ENI.
    #[arg(long)]
    #[serde(default)]
    pub primary: bool,
    /// Host the ENI's interface is on (default: the host whose API or
    /// config creates it).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// DeleteEni: its HaVip bindings go (the owner is cleared if it was this
/// ENI). A primary ENI goes only with its instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct DeleteEni {
    /// ENI id.
    pub id: String,
}

/// ModifyEni: changes the ENI's host interface (the tap name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct ModifyEni {
    /// ENI id.
    pub id: String,
    /// New host-side interface.
    #[arg(long)]
    #[serde(alias = "host_interface")]
    pub interface: String,
}

/// CreateUplink (`[[uplink]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct CreateUplink {
    /// Host interface (uplink).
    #[arg(long)]
    pub interface: String,
    /// vSwitch the uplink carries.
    #[arg(long)]
    pub vswitch: String,
}

/// DeleteUplink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct DeleteUplink {
    /// Host interface of the uplink.
    pub interface: String,
}

/// Declares an operation struct that ends with a HaVip's free-form
/// attributes, `name` and `description` (both optional, `""` clears): the
/// two fields CreateHaVip and ModifyHaVipAttribute set the same way. Plain
/// fields (not a flattened sub-struct) keep `deny_unknown_fields` whole.
macro_rules! with_havip_attributes {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        with_havip_attributes! {
            @fields [$(#[$meta])*] $name [$($fields)*]
            name: " Free-form name (\"\" clears).",
            description: " Free-form description (\"\" clears).",
        }
    };
    (@fields [$($meta:tt)*] $name:ident [$($fields:tt)*] $($attr:ident: $doc:literal,)*) => {
        $($meta)*
        pub struct $name {
            $($fields)*
            $(
                #[doc = $doc]
                #[arg(long)]
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $attr: Option<String>,
            )*
        }
    };
}

with_havip_attributes! {
    /// CreateHaVip: `id` and `address` allocated when absent.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Args)]
    #[serde(deny_unknown_fields)]
    pub struct CreateHaVip {
        /// Resource id (allocated when absent).
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id: Option<String>,
        /// vSwitch id.
        #[arg(long)]
        pub vswitch: String,
        /// Address in the vSwitch (allocated when absent).
        #[arg(long)]
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "de_opt_addr"
        )]
        pub address: Option<Ipv4Addr>,
    }
}

/// DeleteHaVip: refused while bound, fronted by an EIP or a route next hop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct DeleteHaVip {
    /// HaVip id.
    pub id: String,
}

with_havip_attributes! {
    /// ModifyHaVipAttribute: fields left out keep their value; an empty
    /// string clears one.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Args)]
    #[serde(deny_unknown_fields)]
    pub struct ModifyHaVipAttribute {
        /// HaVip id.
        pub id: String,
    }
}

/// AssociateHaVip with an instance or an ENI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct AssociateHaVip {
    /// HaVip id.
    #[arg(value_name = "ID")]
    pub havip: String,
    #[command(flatten)]
    pub member: Member,
}

/// UnassociateHaVip. The current owner is refused
/// (`Conflict.MemberIsOwner`) unless `force` is set; with `force` the owner
/// is cleared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct UnassociateHaVip {
    /// HaVip id.
    #[arg(value_name = "ID")]
    pub havip: String,
    #[command(flatten)]
    pub member: Member,
    /// Unassociate even the member that holds the address now.
    #[arg(long)]
    #[serde(default)]
    pub force: bool,
}

/// Sets (or, with no member, clears) the bound member installed as owner
/// while the kernel reports none (the product's SetInitialMaster).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct SetInitialOwner {
    /// HaVip id.
    #[arg(value_name = "ID")]
    pub havip: String,
    /// A bound member; leave out to clear.
    #[arg(long)]
    #[serde(default)]
    pub member: Option<String>,
}

/// CreateEip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct CreateEip {
    /// EIP id (allocated when absent).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Public IPv4 address.
    #[arg(long)]
    #[serde(deserialize_with = "de_addr")]
    pub address: Ipv4Addr,
}

/// DeleteEip: refused while associated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct DeleteEip {
    /// EIP id.
    pub id: String,
}

/// AssociateEip: fronts a HaVip with the EIP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct AssociateEip {
    /// EIP id.
    #[arg(value_name = "ID")]
    pub eip: String,
    /// HaVip id.
    #[arg(long)]
    pub havip: String,
}

/// UnassociateEip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct UnassociateEip {
    /// EIP id.
    #[arg(value_name = "ID")]
    pub eip: String,
}

/// CreateRouteEntry with a HaVip next hop (`[[route]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    /// Route entry id (allocated when absent).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// VPC id.
    #[arg(long)]
    pub vpc: String,
    /// Destination IPv4 CIDR.
    #[arg(long)]
    pub destination: Ipv4Cidr,
    /// HaVip id.
    #[arg(long = "next-hop", visible_alias = "next-hop-havip")]
    #[serde(alias = "next_hop")]
    pub next_hop_havip: String,
}

/// DeleteRouteEntry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct DeleteRoute {
    /// Route entry id.
    pub id: String,
}

/// SetQuota (`[quotas]`): fields left out keep their value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct SetQuota {
    /// HaVips per account.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub havips_per_account: Option<usize>,
    /// HaVips per VPC.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub havips_per_vpc: Option<usize>,
    /// Route entries with a HaVip next hop per VPC.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub havip_routes_per_vpc: Option<usize>,
}

/// Records the kernel-reported owner of a HaVip (the agent's event
/// consumer; not offered on the command line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordOwner {
    pub havip: String,
    pub owner: ObservedOwner,
}

/// Every state-changing operation of the control plane. On the wire:
/// `{"op": "<snake_case name>", ...fields of the struct}`, with `havip` and
/// `vswitch` as one word (`create_havip`, `delete_vswitch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateVpc(CreateVpc),
    DeleteVpc(DeleteVpc),
    #[serde(rename = "create_vswitch")]
    CreateVSwitch(CreateVSwitch),
    #[serde(rename = "delete_vswitch")]
    DeleteVSwitch(DeleteVSwitch),
    CreateInstance(CreateInstance),
    DeleteInstance(DeleteInstance),
    CreateEni(CreateEni),
    DeleteEni(DeleteEni),
    ModifyEni(ModifyEni),
    CreateUplink(CreateUplink),
    DeleteUplink(DeleteUplink),
    #[serde(rename = "create_havip")]
    CreateHaVip(CreateHaVip),
    #[serde(rename = "delete_havip")]
    DeleteHaVip(DeleteHaVip),
    #[serde(rename = "modify_havip_attribute")]
    ModifyHaVipAttribute(ModifyHaVipAttribute),
    #[serde(rename = "associate_havip")]
    AssociateHaVip(AssociateHaVip),
    #[serde(rename = "unassociate_havip")]
    UnassociateHaVip(UnassociateHaVip),
    #[serde(alias = "set_initial_master")]
    SetInitialOwner(SetInitialOwner),
    CreateEip(CreateEip),
    DeleteEip(DeleteEip),
    AssociateEip(AssociateEip),
    UnassociateEip(UnassociateEip),
    CreateRoute(CreateRoute),
    DeleteRoute(DeleteRoute),
    SetQuota(SetQuota),
    RecordOwner(RecordOwner),
}

macro_rules! into_op {
    ($($t:ident),* $(,)?) => {$(
        impl From<$t> for Op {
            fn from(o: $t) -> Self {
                Op::$t(o)
            }
        }
    )*};
}

/// Every operation struct by what it does to its subject: `From<T> for Op`
/// for each, and [`Op::is_create`] / [`Op::is_delete`] from the first two
/// lists.
macro_rules! op_kinds {
    (
        creates: [$($c:ident),* $(,)?],
        deletes: [$($d:ident),* $(,)?],
        others: [$($o:ident),* $(,)?] $(,)?
    ) => {
        into_op!($($c,)* $($d,)* $($o,)*);

        impl Op {
            /// Whether the operation creates its subject (the API replies
            /// 201).
            pub const fn is_create(&self) -> bool {
                matches!(self, $(Op::$c(_))|*)
            }

            /// Whether the operation deletes its subject (the API replies
            /// `{"deleted": id}` then).
            pub const fn is_delete(&self) -> bool {
                matches!(self, $(Op::$d(_))|*)
            }
        }
    };
}

op_kinds! {
    creates: [
        CreateVpc,
        CreateVSwitch,
        CreateInstance,
        CreateEni,
        CreateUplink,
        CreateHaVip,
        CreateEip,
        CreateRoute,
    ],
    deletes: [
        DeleteVpc,
        DeleteVSwitch,
        DeleteInstance,
        DeleteEni,
        DeleteUplink,
        DeleteHaVip,
        DeleteEip,
        DeleteRoute,
    ],
    others: [
        ModifyEni,
        ModifyHaVipAttribute,
        AssociateHaVip,
        UnassociateHaVip,
        SetInitialOwner,
        AssociateEip,
        UnassociateEip,
        SetQuota,
        RecordOwner,
    ],
}
