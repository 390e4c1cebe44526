//! Loads the embedded XDP object, pins its maps (reusing pinned ones, so a
//! restarted agent adopts the running state) and attaches it through pinned
//! bpf_links (an attached program outlives the agent; a new agent swaps its
//! program in atomically with `bpf_link_update`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    maps::MapData,
    programs::{
        links::{FdLink, PinnedLink},
        ProgramError, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use havip_common::{catalogue, names, DataplaneConfig};
use tracing::{info, warn};

use super::{
    maps::{map_type, Maps, MapsError},
    migrate::{Legacy, MigrationError},
};
use crate::paths::LINKS_SUBDIR;

/// The XDP object built by `cargo xtask build` (see build.rs).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/havip.bpf.o"));

/// How the program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Driver (native) XDP: the fast path. Fails on drivers without XDP support.
    #[default]
    Native,
    /// Generic (skb) XDP: works everywhere, several times slower.
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("this build carries no eBPF object: build with `cargo xtask build`")]
    NoObject,
    #[error("cannot prepare pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "pinned map {path} has another shape (key {found_key}, value {found_value}, \
         entries {found_entries}; expected {want_key}/{want_value}/{want_entries}): \
         left by an incompatible version; run `havip-agent teardown` first"
    )]
    IncompatiblePin {
        path: PathBuf,
        found_key: u32,
        found_value: u32,
        found_entries: u32,
        want_key: u32,
        want_value: u32,
        want_entries: u32,
    },
    #[error(
        "pinned map {path} (key {found_key}, value {found_value}) is {what}: \
         not adopted; run `havip-agent teardown` first"
    )]
    SupersededPin {
        path: PathBuf,
        what: &'static str,
        found_key: u32,
        found_value: u32,
    },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the object has no program {0}")]
    NoProgram(&'static str),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("interface {0} does not exist")]
    UnknownInterface(String),
    #[error(
        "attaching to {ifname} in {mode:?} mode: {source}{hint}",
        hint = if *mode == AttachMode::Native {
            " (if the driver has no native XDP, set xdp_mode = \"generic\")"
        } else {
            ""
        }
    )]
    Attach {
        ifname: String,
        mode: AttachMode,
        #[source]
        source: ProgramError,
    },
    #[error("pinning the link of {ifname}: {detail}")]
    PinLink { ifname: String, detail: String },
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error("writing map {name}: {source}")]
    MapWrite {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// The loaded program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    pub maps: Maps,
    /// Records of the program's aya-log statements (rare paths only).
    pub logs: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Interfaces this process's program is attached to, with the ifindex
    /// they had then (a re-created interface has a new one).
    attached: std::collections::BTreeMap<String, u32>,
    /// Maps of the previous layout being migrated (see `migrate`): unpinned
    /// by [`Dataplane::finish_migration`] once the links run this program.
    legacy: Option<Legacy>,
}

impl Dataplane {
    /// Loads the embedded object with its maps pinned in `pin_dir`; maps
    /// already pinned there are reused as they are (hitless restart).
    ///
    /// # Errors
    /// No object embedded, bpffs not writable, an incompatible pinned map,
    /// or the verifier refusing the program.
    pub fn load(pin_dir: &Path) -> Result<Self, DataplaneError> {
        Self::load_object(OBJECT, pin_dir)
    }

    /// As [`Dataplane::load`], from an explicit object.
    pub fn load_object(object: &[u8], pin_dir: &Path) -> Result<Self, DataplaneError> {
        if object.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        fs::create_dir_all(pin_dir.join(LINKS_SUBDIR)).map_err(|source| {
            DataplaneError::PinDir {
                path: pin_dir.to_owned(),
                source,
            }
        })?;
        check_pinned_shapes(pin_dir)?;
        // The previous layout (HAVIPS/OWNERS hash maps): opened and checked
        // before anything new is created, migrated after the load.
        let legacy = Legacy::open(pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(object)?;
        xdp_program(&mut ebpf)?
            .load()
            .map_err(|source| DataplaneError::Program {
                name: names::PROG_XDP,
                source,
            })?;
        let logs = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(error = %e, "no aya-log records from the XDP program");
                None
            }
        };
        let maps = Maps::take_from(&mut ebpf)?;
        if let Some(legacy) = &legacy {
            let built = legacy.build(&maps)?;
            info!(
                havips = built,
                "HaVip table built from the previous layout; the old maps stay pinned until the links run this program"
            );
        }
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.to_owned(),
            maps,
            logs,
            attached: Default::default(),
            legacy,
        })
    }

    /// Whether maps of the previous layout are still being migrated.
    pub fn migrating(&self) -> bool {
        self.legacy.is_some()
    }

    /// Ends a migration from the previous layout (no-op otherwise): call it
    /// once this program replaced the old one on the links. Owners claimed
    /// in the old map meanwhile are copied over, then the old maps are
    /// unpinned.
    pub fn finish_migration(&mut self) {
        if let Some(legacy) = self.legacy.take() {
            legacy.finish(&self.maps);
        }
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The loaded XDP program (for `BPF_PROG_TEST_RUN` and introspection).
    pub fn program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        xdp_program(&mut self.ebpf)
    }

    fn link_pin(&self, ifname: &str) -> PathBuf {
        self.pin_dir.join(LINKS_SUBDIR).join(ifname)
    }

    /// Attaches to `ifname` through a link pinned at `<pin dir>/links/<ifname>`.
    /// If that link exists (an earlier agent), its program is replaced
    /// atomically: no frame sees the interface without a program.
    ///
    /// # Errors
    /// Unknown interface, driver without native XDP (in `Native` mode),
    /// another XDP program already on the interface.
    pub fn attach(&mut self, ifname: &str, mode: AttachMode) -> Result<(), DataplaneError> {
        if mode == AttachMode::Generic {
            warn!(
                ifname,
                "attaching in generic (skb) XDP mode: several times slower than native"
            );
        }
        let ifindex = match lookup_ifindex(ifname) {
            Ok(Some(i)) => i,
            _ => return Err(DataplaneError::UnknownInterface(ifname.to_owned())),
        };
        let pin = self.link_pin(ifname);
        if pin.exists() {
            // A pinned link outlives its interface: once the interface is
            // deleted the kernel detaches it (its ifindex reads 0), and a
            // re-created interface of the same name has a new ifindex. Such
            // a link is unpinned (freed) and a fresh one attached.
            let linked = pinned_link_ifindex(&pin);
            if linked != Some(ifindex) {
                info!(
                    ifname,
                    ifindex,
                    pinned_ifindex = linked.unwrap_or(0),
                    "pinned link belongs to an earlier interface of this name; unpinning it"
                );
                let _ = fs::remove_file(&pin);
            }
        }
        if pin.exists() {
            match self.replace_on_pinned_link(&pin) {
                Ok(()) => {
                    info!(
                        ifname,
                        "adopted pinned XDP link; program replaced atomically"
                    );
                    self.attached.insert(ifname.to_owned(), ifindex);
                    return Ok(());
                }
                Err(e) => {
                    // The interface was deleted and re-created, or the pin is
                    // stale: start over with a fresh link.
                    warn!(ifname, error = %e, "pinned link unusable; attaching afresh");
                    let _ = fs::remove_file(&pin);
                }
            }
        }
        let program = self.program()?;
        let id = program
            .attach_to_if_index(ifindex, mode.xdp_mode())
            .map_err(|source| DataplaneError::Attach {
                ifname: ifname.to_owned(),
                mode,
                source,
            })?;
        let link = program
            .take_link(id)
            .map_err(|source| DataplaneError::Attach {
                ifname: ifname.to_owned(),
                mode,
                source,
            })?;
        let fd_link = FdLink::try_from(link).map_err(|e| DataplaneError::PinLink {
            ifname: ifname.to_owned(),
            detail: format!(
                "kernel attached without bpf_link ({e}); havip needs bpf_link (Linux ≥ 5.9)"
            ),
        })?;
        fd_link.pin(&pin).map_err(|e| DataplaneError::PinLink {
            ifname: ifname.to_owned(),
            detail: e.to_string(),
        })?;
        info!(ifname, ifindex, ?mode, "attached");
        self.attached.insert(ifname.to_owned(), ifindex);
        Ok(())
    }

    fn replace_on_pinned_link(&mut self, pin: &Path) -> Result<(), String> {
        let pinned = PinnedLink::from_pin(pin).map_err(|e| e.to_string())?;
        let fd_link: FdLink = pinned.into();
        let info = fd_link.info().map_err(|e| e.to_string())?;
        if info.link_type().map_err(|e| e.to_string())? != aya::programs::links::LinkType::Xdp {
            return Err("not an XDP link".into());
        }
        let xdp_link = aya::programs::xdp::XdpLink::try_from(fd_link).map_err(|e| e.to_string())?;
        let program = self.program().map_err(|e| e.to_string())?;
        let id = program
            .attach_to_link(xdp_link)
            .map_err(|e| e.to_string())?;
        // The pin keeps the link alive; drop our handle without detaching.
        let link = program.take_link(id).map_err(|e| e.to_string())?;
        drop(link);
        Ok(())
    }

    /// Interfaces with a pinned link under this pin dir.
    pub fn attached_interfaces(&self) -> Vec<String> {
        attached_interfaces(&self.pin_dir)
    }

    /// Whether this process's program runs on `ifname` as it is now, under
    /// `ifindex` (attached, or swapped into the pinned link left by an
    /// earlier agent), and the link is pinned.
    pub fn runs_on(&self, ifname: &str, ifindex: u32) -> bool {
        self.attached.get(ifname) == Some(&ifindex) && self.link_pin(ifname).exists()
    }

    /// Forgets that the program runs on `ifname` (its interface is gone; the
    /// kernel detached the link). The pin stays, inert, until the interface
    /// comes back and [`Dataplane::attach`] replaces it: `status` reads it
    /// as "down".
    pub fn forget(&mut self, ifname: &str) {
        self.attached.remove(ifname);
    }

    /// Detaches from `ifname` (removes its pinned link).
    pub fn detach(&mut self, ifname: &str) -> Result<(), std::io::Error> {
        self.attached.remove(ifname);
        match fs::remove_file(self.link_pin(ifname)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes `CONFIG[0]`.
    pub fn set_config(&mut self, config: DataplaneConfig) -> Result<(), DataplaneError> {
        self.maps
            .config
            .set(0, config, 0)
            .map_err(|source| DataplaneError::MapWrite {
                name: names::CONFIG,
                source,
            })
    }
}

/// The product's XDP program in `ebpf`.
fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataplaneError> {
    ebpf.program_mut(names::PROG_XDP)
        .ok_or(DataplaneError::NoProgram(names::PROG_XDP))?
        .try_into()
        .map_err(|source| DataplaneError::Program {
            name: names::PROG_XDP,
            source,
        })
}

/// Interfaces with a pinned link under `pin_dir`.
pub fn attached_interfaces(pin_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(pin_dir.join(LINKS_SUBDIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Detaches every link and unpins every map under `pin_dir`, then removes it.
/// Forwarding for the HaVips stops: this is the uninstall path.
pub fn teardown(pin_dir: &Path) -> std::io::Result<()> {
    if !pin_dir.exists() {
        return Ok(());
    }
    for ifname in attached_interfaces(pin_dir) {
        fs::remove_file(pin_dir.join(LINKS_SUBDIR).join(ifname))?;
    }
    let _ = fs::remove_dir(pin_dir.join(LINKS_SUBDIR));
    let names = catalogue::ALL
        .iter()
        .map(|spec| spec.name)
        .chain(catalogue::RETIRED.iter().copied())
        .chain(catalogue::SUPERSEDED.iter().map(|(name, _)| *name));
    for name in names {
        match fs::remove_file(pin_dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::remove_dir(pin_dir)
}

/// ifindex of `ifname` in the current network namespace; `None` for any
/// failure (see [`lookup_ifindex`] to tell "no such device" from others).
pub fn ifindex_of(ifname: &str) -> Option<u32> {
    lookup_ifindex(ifname).ok().flatten()
}

/// ifindex of `ifname` in the current network namespace: `Ok(None)` when
/// the kernel says there is no such device (`ENODEV`/`ENXIO`), `Err` for
/// any other failure (`EMFILE`, `ENOBUFS`, ...), which says nothing about
/// the interface and must not be taken for "gone".
///
/// # Errors
/// The lookup itself failed (not the interface).
pub fn lookup_ifindex(ifname: &str) -> std::io::Result<Option<u32>> {
    if ifname.is_empty() || ifname.len() >= libc::IF_NAMESIZE {
        return Ok(None);
    }
    let c = std::ffi::CString::new(ifname)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index != 0 {
        return Ok(Some(index));
    }
    // glibc opens a socket and asks SIOCGIFINDEX: ENODEV is the answer for
    // an unknown name; EMFILE/ENFILE/ENOBUFS come from the socket.
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => Ok(None),
        _ => Err(e),
    }
}

/// ifindex an XDP link pinned at `pin` is attached to, from its fdinfo
/// (`ifindex:` line, kernel 5.9+); `Some(0)` once its interface is gone,
/// `None` when the pin cannot be read.
pub fn pinned_link_ifindex(pin: &Path) -> Option<u32> {
    use std::os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    };
    /// `union bpf_attr` as `BPF_OBJ_GET` reads it.
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }
    const BPF_OBJ_GET: libc::c_long = 7;
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes()).ok()?;
    let attr = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        // Links are only handed out read-write (BPF_F_RDONLY: EINVAL).
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: attr is a valid bpf_attr prefix that lives across the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGet,
            std::mem::size_of::<ObjGet>() as u32,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel returned a new fd that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let text = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ifindex:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Refuses a pinned map a later layout replaced under a new name
/// (`catalogue::SUPERSEDED`), and one whose type, key/value size or
/// capacity differs from the catalogue (left by an incompatible version),
/// before anything is created. An outcome counter
/// (`catalogue::OUTCOME_COUNTERS`) that differs only in length (a version
/// with fewer outcomes) is unpinned instead, once nothing else differs, and
/// created anew by the load: its counts restart, forwarding goes on (the
/// running program keeps its own reference until its link is updated).
fn check_pinned_shapes(pin_dir: &Path) -> Result<(), DataplaneError> {
    for (name, what) in catalogue::SUPERSEDED {
        let path = pin_dir.join(name);
        if path.exists() {
            let (found_key, found_value) = MapData::from_pin(&path)
                .and_then(|m| m.info())
                .map_or((0, 0), |info| (info.key_size(), info.value_size()));
            return Err(DataplaneError::SupersededPin {
                path,
                what,
                found_key,
                found_value,
            });
        }
    }
    let mut replace = Vec::new();
    for spec in catalogue::ALL {
        let path = pin_dir.join(spec.name);
        if !path.exists() {
            continue;
        }
        let Ok(info) = MapData::from_pin(&path).and_then(|m| m.info()) else {
            continue;
        };
        let same_type = info.map_type().ok() == Some(map_type(spec.kind));
        let same_kv = (info.key_size(), info.value_size()) == (spec.key_size, spec.value_size);
        if same_type && same_kv && info.max_entries() == spec.max_entries {
            continue;
        }
        if same_type && same_kv && catalogue::OUTCOME_COUNTERS.contains(spec) {
            replace.push((path, info.max_entries(), spec.max_entries));
            continue;
        }
        return Err(DataplaneError::IncompatiblePin {
            path,
            found_key: info.key_size(),
            found_value: info.value_size(),
            found_entries: info.max_entries(),
            want_key: spec.key_size,
            want_value: spec.value_size,
            want_entries: spec.max_entries,
        });
    }
    for (path, found, want) in replace {
        fs::remove_file(&path).map_err(|source| DataplaneError::PinDir {
            path: path.clone(),
            source,
        })?;
        warn!(
            map = %path.display(),
            found,
            want,
            "outcome counters of the previous version replaced (outcomes added): their counts restart"
        );
    }
    Ok(())
}
