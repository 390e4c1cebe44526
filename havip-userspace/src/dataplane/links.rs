//! Links as they come and go: a netlink (`RTNLGRP_LINK`) watcher that tells
//! the agent when an interface appears, changes or disappears, and the
//! check that a port can receive `XDP_REDIRECT`ed frames at all.
//!
//! The socket is opened in the calling thread's network namespace: the
//! agent enters `--netns` before it starts any thread, so the watcher sees
//! that namespace's links.

use futures_util::stream::StreamExt;
use rtnetlink::{
    packet_core::NetlinkPayload,
    packet_route::{
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, XdpAttached},
        RouteNetlinkMessage,
    },
    sys::{AsyncSocket, SocketAddr},
};
use tokio::sync::mpsc;
use tracing::warn;

/// `RTMGRP_LINK`: the multicast group of link notifications.
const RTMGRP_LINK: u32 = 1;

/// A link notification, reduced to what the agent acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// `RTM_NEWLINK`: created, renamed, up/down, features, XDP changed.
    Changed { ifindex: u32, name: Option<String> },
    /// `RTM_DELLINK`: the interface is gone (or moved to another netns).
    Removed { ifindex: u32, name: Option<String> },
    /// The kernel dropped notifications (socket buffer full): resync all.
    Overrun,
}

#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    #[error("opening the netlink route socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("joining the link notification group: {0}")]
    Bind(#[source] std::io::Error),
}

fn name_of(msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// Opens a netlink socket subscribed to link notifications in the current
/// network namespace and forwards them to the returned channel until the
/// receiver is dropped.
///
/// # Errors
/// The socket cannot be opened or bound (e.g. out of file descriptors).
pub fn watch() -> Result<mpsc::UnboundedReceiver<LinkEvent>, LinksError> {
    let (mut conn, _handle, mut messages) =
        rtnetlink::new_connection().map_err(LinksError::Socket)?;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))
        .map_err(LinksError::Bind)?;
    tokio::spawn(conn);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let event = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    LinkEvent::Changed {
                        ifindex: l.header.index,
                        name: name_of(&l),
                    }
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                    LinkEvent::Removed {
                        ifindex: l.header.index,
                        name: name_of(&l),
                    }
                }
                NetlinkPayload::Overrun(_) => LinkEvent::Overrun,
                _ => continue,
            };
            if tx.send(event).is_err() {
                return;
            }
        }
        warn!("netlink link watcher ended; the periodic resync remains");
    });
    Ok(rx)
}

/// Whether a port can receive `XDP_REDIRECT`ed frames.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Redirect {
    /// A tap, a physical NIC, or a veth whose peer has GRO or an XDP program.
    Yes,
    /// A veth whose peer has neither GRO nor an XDP program: the kernel
    /// drops every frame redirected into it, silently (veth_xdp_xmit finds
    /// no NAPI on the peer's queue).
    No { peer: String },
    /// The check could not be made (peer namespace not found, ...): the port
    /// is treated as redirectable, as before the check existed.
    Unknown { reason: String },
}

/// Facts about one link read over netlink.
#[derive(Clone, Debug, Default)]
struct Facts {
    veth: bool,
    /// `IFLA_LINK`: the peer's ifindex (in the peer's namespace).
    link: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the peer's namespace, as seen from here.
    link_netnsid: Option<i32>,
    xdp: bool,
}

fn facts(msg: &LinkMessage) -> Facts {
    let mut f = Facts::default();
    for a in &msg.attributes {
        match a {
            LinkAttribute::LinkInfo(infos) => {
                f.veth = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
            }
            LinkAttribute::Link(i) => f.link = Some(*i),
            LinkAttribute::LinkNetNsId(n) => f.link_netnsid = Some(*n),
            LinkAttribute::Xdp(x) => {
                f.xdp = x
                    .iter()
                    .any(|x| matches!(x, LinkXdp::Attached(a) if *a != XdpAttached::None));
            }
            _ => {}
        }
    }
    f
}

async fn link_facts(handle: &rtnetlink::Handle, ifindex: u32) -> Result<Facts, String> {
    let mut s = handle.link().get().match_index(ifindex).execute();
    match s.next().await {
        Some(Ok(msg)) => Ok(facts(&msg)),
        Some(Err(e)) => Err(e.to_string()),
        None => Err(format!("no link {ifindex}")),
    }
}

/// Runs `f` on a fresh thread (with its own small runtime) that has entered
/// the network namespace open at `ns` (or stays in the current one).
fn in_netns<T: Send + 'static>(
    ns: Option<std::fs::File>,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        if let Some(file) = ns {
            use std::os::fd::AsRawFd;
            // SAFETY: valid fd; CLONE_NEWNET affects this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
        }
        f()
    })
    .join()
    .map_err(|_| "netns helper thread panicked".to_owned())?
}

/// `IFF_UP`-independent GRO state of `ifindex` in the current namespace
/// (`ETHTOOL_GGRO`).
fn gro_on(ifindex: u32) -> Result<bool, String> {
    const ETHTOOL_GGRO: u32 = 0x2b;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buffer of IF_NAMESIZE as the call requires.
    if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
        return Err(format!("no interface {ifindex}"));
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GGRO,
        data: 0,
    };
    // SAFETY: plain syscalls on an fd we own and close; ifreq is zeroed and
    // its name NUL-terminated, ifr_data points at `value` for the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name = name;
        ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
        let r = libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut ifr);
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(format!("ETHTOOL_GGRO: {e}"));
        }
    }
    Ok(value.data != 0)
}

/// The peer's GRO and XDP state, read inside the namespace open at `ns`.
fn peer_state(ns: Option<std::fs::File>, peer: u32) -> Result<(bool, bool, String), String> {
    in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let f = link_facts(&handle, peer).await?;
            let gro = gro_on(peer)?;
            let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
            // SAFETY: buffer of IF_NAMESIZE as the call requires.
            let p = unsafe { libc::if_indextoname(peer, name.as_mut_ptr()) };
            let name = if p.is_null() {
                peer.to_string()
            } else {
                // SAFETY: if_indextoname wrote a NUL-terminated name.
                unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            };
            Ok((gro, f.xdp, name))
        })
    })
}

/// The namespace whose id, as seen from here, is `nsid`: the named ones
/// under /run/netns and the init process's, asked with `RTM_GETNSID`.
async fn find_netns(handle: &rtnetlink::Handle, nsid: i32) -> Option<std::fs::File> {
    use rtnetlink::packet_core::{NetlinkMessage, NLM_F_REQUEST};
    use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};
    let mut candidates: Vec<std::path::PathBuf> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    candidates.push("/proc/1/ns/net".into());
    for path in candidates {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        use std::os::fd::AsRawFd;
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(file.as_raw_fd() as u32));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
        req.header.flags = NLM_F_REQUEST;
        let Ok(mut answers) = handle.clone().request(req) else {
            continue;
        };
        while let Some(answer) = answers.next().await {
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) = answer.payload {
                let id = m.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(i) => Some(*i),
                    _ => None,
                });
                if id == Some(nsid) {
                    return Some(file);
                }
            }
        }
    }
    None
}

/// Whether `ifindex` (in the current namespace) can receive redirected
/// frames: anything but a veth can; a veth can if its peer has GRO on or an
/// XDP program attached (see [`Redirect::No`]).
pub async fn redirectable(ifindex: u32) -> Redirect {
    let (conn, handle, _) = match rtnetlink::new_connection() {
        Ok(c) => c,
        Err(e) => {
            return Redirect::Unknown {
                reason: format!("netlink: {e}"),
            }
        }
    };
    tokio::spawn(conn);
    let f = match link_facts(&handle, ifindex).await {
        Ok(f) => f,
        Err(reason) => return Redirect::Unknown { reason },
    };
    if !f.veth {
        return Redirect::Yes;
    }
    let Some(peer) = f.link.filter(|p| *p != 0) else {
        return Redirect::Unknown {
            reason: "veth without IFLA_LINK".into(),
        };
    };
    let ns = match f.link_netnsid {
        None => None,
        Some(nsid) => match find_netns(&handle, nsid).await {
            Some(file) => Some(file),
            None => {
                return Redirect::Unknown {
                    reason: format!("peer namespace (nsid {nsid}) not found under /run/netns"),
                }
            }
        },
    };
    match tokio::task::spawn_blocking(move || peer_state(ns, peer)).await {
        Ok(Ok((gro, xdp, _))) if gro || xdp => Redirect::Yes,
        Ok(Ok((_, _, name))) => Redirect::No { peer: name },
        Ok(Err(reason)) => Redirect::Unknown { reason },
        Err(e) => Redirect::Unknown {
            reason: e.to_string(),
        },
    }
}
