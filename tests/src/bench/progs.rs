//! The bench-only eBPF object (`havip-ebpf/src/bench/main.rs`): generator,
//! receiver counter and the baselines the product is compared with.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{Array, DevMap, DevMapHash, HashMap, MapData, PerCpuArray},
    programs::{
        tc::SchedClassifierLink,
        tc::{NlOptions, TcAttachOptions},
        xdp::XdpLinkId,
        SchedClassifier, TcAttachType, TestRun, TestRunAttrs, TestRunOptions, TestRunResult, Xdp,
        XdpMode,
    },
    Ebpf, EbpfLoader,
};

use havip_common::{HavipKey, OwnerEntry, PortInfo};

use super::topo;
use crate::{frames, lab::Netns};

/// Built with the product object by `cargo xtask build` (embedded by tests/build.rs).
static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/havip-bench-progs.bpf.o"));

pub const PROG_GEN: &str = "bench_gen";
pub const PROG_COUNT: &str = "bench_count";
pub const PROG_PASS: &str = "bench_pass";
pub const PROG_BARE: &str = "bench_bare_redirect";
pub const PROG_TC: &str = "bench_tc_redirect";
/// The forward-path cost ladder (see havip-ebpf/src/bench/main.rs), in
/// order, with its report key and what each step adds.
pub const LADDER: [(&str, &str, &str); 5] = [
    (
        "lad1_devmap_hash",
        "ladder_devmap_hash",
        "bare redirect through a DEVMAP_HASH (TX_PORTS' type)",
    ),
    (
        "lad2_ports",
        "ladder_ports_lookup",
        "+ PORTS hash lookup by ingress ifindex",
    ),
    (
        "lad3_owners",
        "ladder_owners_lookup",
        "+ IPv4 parse + OWNERS hash lookup",
    ),
    (
        "lad4_counters",
        "ladder_counters",
        "+ HAVIP_STATS and HANDLED per-CPU counters",
    ),
    (
        "lad5_bytecopy",
        "ladder_bytecopy",
        "+ MACs assigned as [u8; 6] (2 calls to a byte-loop memmove)",
    ),
];
pub const PROG_SKETCH: &str = "lad_sketch";
pub const PROG_SKETCH_ARRAY: &str = "lad_sketch_array";
/// Steps on top of the array sketch (the product's layout): the pieces the
/// product's forward path does beyond it, each priced alone.
pub const ARRAY_LADDER: [(&str, &str, &str); 2] = [
    (
        "lad6_source_probe",
        "ladder_source_probe",
        "array sketch + the source check as a table probe on the source address (no filter)",
    ),
    (
        "lad7_handled",
        "ladder_handled",
        "+ HANDLED[Forwarded] (the second per-CPU counter)",
    ),
];
const XDP_PROGS: [&str; 13] = [
    PROG_GEN,
    PROG_COUNT,
    PROG_PASS,
    PROG_BARE,
    LADDER[0].0,
    LADDER[1].0,
    LADDER[2].0,
    LADDER[3].0,
    LADDER[4].0,
    PROG_SKETCH,
    PROG_SKETCH_ARRAY,
    ARRAY_LADDER[0].0,
    ARRAY_LADDER[1].0,
];

/// Mirror of `Slot` in havip-ebpf/src/bench/main.rs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Slot {
    pub key: HavipKey,
    pub member: u32,
    pub havip_id: u32,
}

/// Mirror of `Member` in havip-ebpf/src/bench/main.rs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Member {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Slot>() == 16 && core::mem::size_of::<Member>() == 12);

// SAFETY: repr(C), integers and byte arrays, no implicit padding (asserted).
unsafe impl aya::Pod for Slot {}
// SAFETY: as above.
unsafe impl aya::Pod for Member {}

const SLOT_BITS: u32 = 18;

/// Same as `slot_hash` in havip-ebpf/src/bench/main.rs.
pub fn slot_hash(key: &HavipKey) -> u32 {
    let h = (u32::from_ne_bytes(key.addr) ^ key.vswitch_id.wrapping_mul(0x9e37_79b1))
        .wrapping_mul(0x85eb_ca6b);
    h ^ (h >> 15)
}

pub use havip_common::bench::{GenConfig, HDR_LEN, HDR_WORDS};

/// XDP return codes (uapi `enum xdp_action`).
pub use crate::action as xdp_action;

/// One generated frame: 106 bytes (Ethernet, IPv4, UDP, 64 bytes of data),
/// the size of the reference figures in docs/benchmark.md.
pub struct Traffic {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    /// First destination; frame i goes to `dst + (i mod dst_count)`.
    pub dst: Ipv4Addr,
    pub dst_count: u32,
}

pub const PAYLOAD_LEN: usize = 64;

impl Traffic {
    /// The frame the live-frame pages are initialised with (UDP checksum 0:
    /// the destination rotates).
    pub fn frame(&self) -> Vec<u8> {
        let mut f = frames::udp_frame(
            self.dst_mac,
            self.src_mac,
            self.src,
            self.dst,
            40000,
            9,
            &[0x5a; PAYLOAD_LEN],
        )
        .bytes();
        f[40] = 0;
        f[41] = 0;
        f
    }

    pub fn config(&self) -> GenConfig {
        let f = self.frame();
        let mut hdr = [0u16; HDR_WORDS];
        for (i, w) in hdr.iter_mut().enumerate() {
            *w = u16::from_ne_bytes([f[2 * i], f[2 * i + 1]]);
        }
        // IPv4 header: bytes 14..34; checksum at 24..26, destination at 30..34.
        let ip_sum_base = (14..34)
            .step_by(2)
            .filter(|&o| o != 24 && o != 30 && o != 32)
            .map(|o| u32::from(u16::from_be_bytes([f[o], f[o + 1]])))
            .sum();
        GenConfig {
            hdr,
            _pad: 0,
            ip_sum_base,
            dst_base: u32::from(self.dst),
            dst_count: self.dst_count.max(1),
            _pad2: 0,
        }
    }
}

/// `struct xdp_md` for `ctx_in`: no metadata, `data_end` = frame length,
/// frames arriving on `ifindex` queue 0.
pub fn xdp_md(len: usize, ifindex: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
    b[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    b
}

/// Non-live `BPF_PROG_TEST_RUN` of `prog` on `frame` arriving on `ifindex`
/// (resolved in the calling thread's namespace), `repeat` times.
/// `TestRunResult::duration` is the kernel's *average per repetition*
/// (net/bpf/test_run.c divides the elapsed time by the iterations), in whole ns.
pub fn run_once(
    prog: &Xdp,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    out: Option<&mut [u8]>,
) -> Result<TestRunResult> {
    let ctx = xdp_md(frame.len(), ifindex);
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: out,
        ctx_in: Some(&ctx),
        ctx_out: None,
        repeat,
        attrs: TestRunAttrs::new(),
    };
    prog.test_run(opts).context("BPF_PROG_TEST_RUN")
}

/// The loaded bench object.
pub struct BenchProgs {
    ebpf: Ebpf,
    gen_cfg: Array<MapData, GenConfig>,
    gen_next: PerCpuArray<MapData, u32>,
    rx_count: PerCpuArray<MapData, u64>,
    bare_tx: DevMap<MapData>,
}

fn mac_words(mac: [u8; 6]) -> [u16; 3] {
    [
        u16::from_ne_bytes([mac[0], mac[1]]),
        u16::from_ne_bytes([mac[2], mac[3]]),
        u16::from_ne_bytes([mac[4], mac[5]]),
    ]
}

impl BenchProgs {
    /// Loads every program; the redirect baselines write `dst_mac`/`src_mac`
    /// and the tc one redirects to `tc_ifindex` (load-time constants).
    pub fn load(dst_mac: [u8; 6], src_mac: [u8; 6], tc_ifindex: u32) -> Result<Self> {
        if OBJECT.is_empty() {
            bail!(
                "this build carries no bench object: build havip-ebpf (which builds \
                 havip-bench-progs) before this crate (havip-tests), e.g. with `cargo xtask build`"
            );
        }
        let dst = mac_words(dst_mac);
        let src = mac_words(src_mac);
        let mut ebpf = EbpfLoader::new()
            .override_global("REWRITE_DST", &dst, true)
            .override_global("REWRITE_SRC", &src, true)
            .override_global("TC_IFINDEX", &tc_ifindex, true)
            .load(OBJECT)
            .context("loading the bench object")?;
        for name in XDP_PROGS {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("bench object has no program {name}"))?
                .try_into()?;
            prog.load().with_context(|| format!("loading {name}"))?;
        }
        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROG_TC)
            .with_context(|| format!("bench object has no program {PROG_TC}"))?
            .try_into()?;
        tc.load().with_context(|| format!("loading {PROG_TC}"))?;
        macro_rules! take {
            ($name:literal) => {
                ebpf.take_map($name)
                    .with_context(|| format!("bench object has no map {}", $name))?
                    .try_into()
                    .with_context(|| format!("map {}", $name))?
            };
        }
        let gen_cfg = take!("GEN_CFG");
        let gen_next = take!("GEN_NEXT");
        let rx_count = take!("RX_COUNT");
        let bare_tx = take!("BARE_TX");
        Ok(Self {
            ebpf,
            gen_cfg,
            gen_next,
            rx_count,
            bare_tx,
        })
    }

    pub fn xdp(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?)
    }

    pub fn xdp_mut(&mut self, name: &str) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?)
    }

    /// Attaches XDP program `name` (driver mode) to `ifname` of the calling
    /// thread's namespace.
    pub fn attach_xdp(&mut self, name: &str, ifname: &str) -> Result<XdpLinkId> {
        self.xdp_mut(name)?
            .attach(ifname, XdpMode::Driver)
            .with_context(|| format!("attaching {name} to {ifname}"))
    }

    pub fn detach_xdp(&mut self, name: &str, link: XdpLinkId) -> Result<()> {
        self.xdp_mut(name)?
            .detach(link)
            .with_context(|| format!("detaching {name}"))
    }

    /// Adds clsact to `ifname` in namespace `ns` and attaches the tc
    /// baseline at its ingress (netlink cls_bpf, direct action: the classic
    /// clsact set-up). Detached, and the qdisc removed, in that namespace
    /// when the returned guard drops.
    pub fn attach_tc(&mut self, ns: &Netns, ifname: &str) -> Result<TcAttachment> {
        let mut guard = TcAttachment {
            link: None,
            ns: ns.name().to_owned(),
            ifname: ifname.to_owned(),
        };
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROG_TC)
            .with_context(|| format!("no program {PROG_TC}"))?
            .try_into()?;
        guard.link = Some(topo::in_ns(ns, || {
            aya::programs::tc::qdisc_add_clsact(ifname)
                .with_context(|| format!("adding clsact to {ifname}"))?;
            let id = prog
                .attach_with_options(
                    ifname,
                    TcAttachType::Ingress,
                    TcAttachOptions::Netlink(NlOptions::default()),
                )
                .with_context(|| format!("attaching {PROG_TC} to {ifname} ingress"))?;
            // Ours to detach, in this namespace (a netlink detach names an
            // ifindex: never let it run from another namespace).
            Ok(prog.take_link(id)?)
        })?);
        Ok(guard)
    }

    /// Sets the bare redirect's target port.
    pub fn set_bare_target(&mut self, ifindex: u32) -> Result<()> {
        self.bare_tx
            .set(0, ifindex, None, 0)
            .context("writing BARE_TX")
    }

    /// Fills the ladder's maps like the product's for one HaVip (`key` owned
    /// by `owner` behind port `owner.ifindex`, clients on `client_port`).
    /// Call from the host namespace (DEVMAP entries resolve ifindexes there).
    pub fn set_ladder(
        &mut self,
        client_port: u32,
        port: PortInfo,
        key: HavipKey,
        owner: OwnerEntry,
    ) -> Result<()> {
        let mut ports: HashMap<&mut MapData, u32, PortInfo> = self
            .ebpf
            .map_mut("LAD_PORTS")
            .context("no map LAD_PORTS")?
            .try_into()?;
        ports.insert(client_port, port, 0)?;
        let mut array: Array<&mut MapData, PortInfo> = self
            .ebpf
            .map_mut("LAD_PORTS_ARRAY")
            .context("no map LAD_PORTS_ARRAY")?
            .try_into()?;
        array.set(client_port, port, 0)?;
        let mut owners: HashMap<&mut MapData, HavipKey, OwnerEntry> = self
            .ebpf
            .map_mut("LAD_OWNERS")
            .context("no map LAD_OWNERS")?
            .try_into()?;
        owners.insert(key, owner, 0)?;
        let mut tx: DevMapHash<&mut MapData> = self
            .ebpf
            .map_mut("LAD_TX")
            .context("no map LAD_TX")?
            .try_into()?;
        tx.insert(owner.ifindex, owner.ifindex, None, 0)?;
        // The array sketch: member 1 is the owner; the HaVip's first probe slot.
        let mut members: Array<&mut MapData, Member> = self
            .ebpf
            .map_mut("LAD_MEMBERS")
            .context("no map LAD_MEMBERS")?
            .try_into()?;
        let member = Member {
            ifindex: owner.ifindex,
            mac: owner.mac,
            _pad: [0; 2],
        };
        members.set(1, member, 0)?;
        let mut slots: Array<&mut MapData, Slot> = self
            .ebpf
            .map_mut("LAD_SLOTS")
            .context("no map LAD_SLOTS")?
            .try_into()?;
        let slot = Slot {
            key,
            member: 1,
            havip_id: owner.havip_id,
        };
        slots.set(slot_hash(&key) & ((1 << SLOT_BITS) - 1), slot, 0)?;
        Ok(())
    }

    /// Sets the generator's template and restarts its rotation.
    pub fn set_traffic(&mut self, cfg: &GenConfig) -> Result<()> {
        self.gen_cfg.set(0, *cfg, 0).context("writing GEN_CFG")?;
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .context("counting CPUs")?;
        let zero = aya::maps::PerCpuValues::try_from(vec![0u32; cpus])?;
        self.gen_next.set(0, zero, 0).context("writing GEN_NEXT")
    }

    /// Frames counted by the receiver so far (all CPUs).
    pub fn rx_count(&self) -> Result<u64> {
        let values = self.rx_count.get(&0, 0).context("reading RX_COUNT")?;
        Ok(values.iter().sum())
    }

    /// Live-frame generator run: `packets` frames built from `frame`, sent
    /// out of c0 (`c0_ifindex`, in the calling thread's namespace) by
    /// `XDP_TX`. Returns the wall time of the run.
    pub fn generate(
        &self,
        frame: &[u8],
        c0_ifindex: u32,
        packets: u32,
    ) -> Result<std::time::Duration> {
        let prog = self.xdp(PROG_GEN)?;
        let ctx = xdp_md(frame.len(), c0_ifindex);
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: None,
            ctx_in: Some(&ctx),
            ctx_out: None,
            repeat: packets,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
        };
        let start = std::time::Instant::now();
        prog.test_run(opts)
            .context("live-frame test_run of the generator")?;
        Ok(start.elapsed())
    }
}

/// A tc program attached by netlink in a bench namespace: detached (and
/// the clsact qdisc removed) from inside that namespace on drop.
pub struct TcAttachment {
    link: Option<SchedClassifierLink>,
    ns: String,
    ifname: String,
}

impl Drop for TcAttachment {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            let path = format!("/run/netns/{}", self.ns);
            let _ = std::thread::spawn(move || {
                if crate::lab::enter(&path).is_ok() {
                    drop(link);
                } else {
                    // The namespace is gone, and the filter with it.
                    std::mem::forget(link);
                }
            })
            .join();
        }
        let _ = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "tc",
                "qdisc",
                "del",
                "dev",
                &self.ifname,
                "clsact",
            ])
            .output();
    }
}

/// Pins the calling thread to `cpu` and, with `realtime`, gives it
/// SCHED_FIFO priority 50: on a shared machine (parallel builds) ordinary
/// tasks then cannot preempt the measurement, much as they cannot preempt
/// softirq forwarding on a real host. The kernel keeps 5 % of each second
/// for everyone else (sched_rt_runtime_us).
pub fn pin_thread(cpu: usize, realtime: bool) -> Result<()> {
    if realtime {
        // SAFETY: plain syscall on the calling thread with a local parameter.
        unsafe {
            let param = libc::sched_param { sched_priority: 50 };
            if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) != 0 {
                bail!(
                    "sched_setscheduler(SCHED_FIFO): {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    crate::guards::pin_current_thread(cpu)
        .map_err(|e| anyhow::anyhow!("sched_setaffinity(cpu {cpu}): {e}"))
}
