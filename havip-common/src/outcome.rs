//! What the program did with a frame: `Handled` (kept or acted on) and
//! `DropReason` (dropped). Each enum is declared once by [`outcomes!`],
//! which derives its counter names, `ALL` and `COUNT`: the variant's value
//! is its index in `HANDLED` / `DROPS` and in `ALL`.

/// Declares a `#[repr(u32)]` enum numbered 0.. in declaration order, with
/// `COUNT`, `ALL` (in value order), `name()` (the snake_case counter name)
/// and `from_u32`.
macro_rules! outcomes {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident => $label:literal,
            )*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $enum {
            $($(#[$vmeta])* $variant,)*
        }

        impl $enum {
            pub const COUNT: usize = [$($label),*].len();
            pub const ALL: [$enum; Self::COUNT] = [$($enum::$variant),*];

            /// Counter name (snake_case, stable: dashboards key on it).
            pub const fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $label,)*
                }
            }

            pub fn from_u32(v: u32) -> Option<Self> {
                Self::ALL.get(v as usize).copied()
            }
        }

        const _: () = {
            let mut i = 0;
            while i < $enum::COUNT {
                assert!($enum::ALL[i] as usize == i);
                i += 1;
            }
        };
    };
}

outcomes! {
    /// Frames the program handled without dropping them as bad: index of `HANDLED`.
    pub enum Handled {
        /// Not for a HaVip: left to the kernel untouched.
        Passed => "passed",
        /// Could not be parsed (truncated, bad header): left to the kernel untouched.
        PassedMalformed => "passed_malformed",
        /// Redirected to the HaVip's owner.
        Forwarded => "forwarded",
        /// ARP request for a HaVip answered in XDP (sent back out of the
        /// ingress port with a devmap redirect).
        ProxyArpReplied => "proxy_arp_replied",
        /// Authorised claim that changed the owner.
        ClaimAccepted => "claim_accepted",
        /// Authorised claim from the current owner (keepalived repeats GARPs).
        ClaimRefreshed => "claim_refreshed",
        /// ARP from a bound member with the HaVip as sender that is not a claim
        /// (e.g. the owner resolving a client): passed on.
        PassedMemberArp => "passed_member_arp",
        /// ARP probe (sender IP 0.0.0.0) for a HaVip from one of its own
        /// members: absorbed so the member never sees a conflict for its own
        /// address. (A member's ordinary request is answered like a client's.)
        MemberArpAbsorbed => "member_arp_absorbed",
        /// VLAN-tagged frame from a vSwitch port: never redirected, claimed or
        /// answered; left untouched to the bridge (its VLAN filtering decides).
        PassedTagged => "passed_tagged",
        /// IPv4 to a HaVip from the uplink whose destination MAC is none of the
        /// HaVip's virtual MAC, the gateway MAC or the owner's MAC: not
        /// addressed to us, left untouched.
        PassedUplinkForeignMac => "passed_uplink_foreign_mac",
        /// IPv4 to a HaVip whose owner is on another host: VXLAN-encapsulated
        /// and redirected out of the local VTEP port.
        ForwardedRemote => "forwarded_remote",
        /// VXLAN from another host for a HaVip whose owner is local:
        /// decapsulated and redirected to the owner's port.
        Decapsulated => "decapsulated",
        /// IPv4 from an instance port to the gateway MAC matching a route of
        /// the port's VPC with a HaVip next hop: redirected to the HaVip's
        /// local owner (MACs rewritten, IPv4 header untouched).
        Routed => "routed",
        /// As `Routed`, the owner on another host: VXLAN-encapsulated and
        /// redirected out of the local VTEP port.
        RoutedRemote => "routed_remote",
        /// IPv4 from an uplink to an EIP: destination rewritten to the
        /// associated HaVip (DNAT) and redirected to its local owner.
        EipDnat => "eip_dnat",
        /// As `eip_dnat`, the owner being on another host: encapsulated.
        EipDnatRemote => "eip_dnat_remote",
        /// IPv4 from a HaVip's current owner, source the HaVip, to outside
        /// the VPC: source rewritten to the EIP (SNAT) and redirected out
        /// of the uplink the host's routing chose.
        EipSnat => "eip_snat",
    }
}

outcomes! {
    /// Why a frame was dropped: index of `DROPS`, and the program's error type.
    pub enum DropReason {
        /// IPv4 to a HaVip that has no owner yet.
        NoOwner => "no_owner",
        /// IPv4 to a HaVip with a broadcast or multicast destination MAC.
        NonUnicastToHavip => "non_unicast_to_havip",
        /// The egress port (owner's, or the ingress port for a proxy ARP reply)
        /// is missing from `TX_PORTS`: the redirect was refused.
        PortNotRedirectable => "port_not_redirectable",
        /// Claim from a port that is not bound to the HaVip.
        ClaimUnbound => "claim_unbound",
        /// Claim from a bound port with another MAC than the bound ENI's.
        ClaimMacMismatch => "claim_mac_mismatch",
        /// Claim from another member inside the hold time.
        ClaimHeldDown => "claim_held_down",
        /// Claim (gratuitous ARP or reply) for a HaVip arriving on the uplink:
        /// only a local instance port can make a member the owner.
        ClaimNotFromInstance => "claim_not_from_instance",
        /// ARP with an Ethernet source different from the ARP sender MAC.
        ArpSenderMismatch => "arp_sender_mismatch",
        /// The kernel refused the `OWNERS` update of an authorised claim.
        OwnerUpdateFailed => "owner_update_failed",
        /// ARP naming as sender a HaVip of another vSwitch of the same VPC.
        ClaimWrongVSwitch => "claim_wrong_vswitch",
        /// VLAN-tagged ARP or IPv4 on an instance port naming a HaVip of the
        /// port's vSwitch as sender/source: a tag is no way around the checks.
        TaggedHavipSender => "tagged_havip_sender",
        /// IPv4 from an instance port with a HaVip of its vSwitch as source,
        /// and the port (with that source MAC) is not bound to the HaVip.
        SrcHavipUnbound => "src_havip_unbound",
        /// IPv4 to a HaVip arriving on the owner's own port: never sent back
        /// out of the port it came in on (the bridge would flood it).
        HairpinToOwner => "hairpin_to_owner",
        /// VXLAN for a HaVip of the VNI's vSwitch whose owner is not local
        /// (remote, or none): never re-encapsulated (no loops).
        DecapNotOwner => "decap_not_owner",
        /// The encapsulated frame would exceed the VTEP port's MTU (or the
        /// frame has no headroom for the outer headers).
        EncapTooBig => "encap_too_big",
        /// Remote owner, but no way to reach it: its VTEP has no `VTEPS`
        /// entry, or this host has no VTEP or no VNI for the vSwitch.
        NoVtep => "no_vtep",
        /// TCP/UDP to or from an EIP whose L4 header (checksum) is not in the
        /// frame (truncated, or a first fragment too short to hold it).
        EipTruncated => "eip_truncated",
        /// DNAT to a HaVip that has no `OWNERS` entry (removed while the
        /// EIP entry was still there).
        EipNoHavip => "eip_no_havip",
        /// SNAT: the host's route for the destination is a blackhole,
        /// unreachable or prohibit route, or forwarding is disabled on the
        /// ingress port. (No route at all, or a local destination: the
        /// frame is left untouched, counted as `passed`.)
        EipNoRoute => "eip_no_route",
        /// SNAT: the route's next hop on the uplink has no resolved
        /// neighbour entry in the host's ARP table.
        EipNoNeighbour => "eip_no_neighbour",
        /// SNAT: the translated frame is larger than the uplink's MTU.
        EipFragNeeded => "eip_frag_needed",
    }
}

impl DropReason {
    /// Reasons that are reported as security events (someone tried to
    /// announce a HaVip it may not).
    pub const fn is_security(self) -> bool {
        matches!(
            self,
            DropReason::ClaimUnbound
                | DropReason::ClaimMacMismatch
                | DropReason::ClaimNotFromInstance
                | DropReason::ArpSenderMismatch
                | DropReason::ClaimWrongVSwitch
                | DropReason::TaggedHavipSender
        )
    }
}
