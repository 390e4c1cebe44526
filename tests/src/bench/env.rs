//! The lab of one run: topology, the product data plane configured exactly
//! as the agent does it (`Dataplane::load` + `reconcile`), the bench
//! programs, and the throughput measurement itself.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::{
    maps::{MapData, RingBuf},
    programs::xdp::XdpLinkId,
};
use havip::dataplane::{
    self, events, stats, AttachMode, Dataplane, Desired, DesiredBinding, DesiredHavip, DesiredPort,
    Maps,
};
use havip_common::{port_flags, virtual_mac, DataplaneConfig, Handled, HavipKey, PortInfo};

use super::{
    progs::{self, BenchProgs, Traffic},
    topo::{self, BenchLab, PinDir, CLIENT_MAC, GATEWAY_MAC, OWNER_A_MAC, OWNER_B_MAC},
    Params,
};
use crate::frames;

pub const VSWITCH: u32 = 1;
/// HaVip i is `HAVIP_BASE + i` (id i); HaVip 0 is bound to both members.
pub const HAVIP_BASE: Ipv4Addr = Ipv4Addr::new(10, 80, 0, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
/// An address in the vSwitch that is no HaVip (pass-through frames).
pub const OTHER_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 3);

/// Ports the product is attached to, as the agent attaches it to every port.
pub const HOST_PORTS: [&str; 3] = ["hc0", "ho0", "ho1"];

/// One throughput measurement.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub sent: u64,
    pub delivered: u64,
    pub wall: Duration,
    /// How busy the CPUs other than the generator's were meanwhile (0..1):
    /// other work on a shared machine competes for caches and memory.
    pub others_busy: f64,
}

/// (busy, total) jiffies of every CPU but `cpu`, from /proc/stat.
fn cpu_times_except(cpu: usize) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut busy = 0;
    let mut total = 0;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        let Some(n) = name
            .strip_prefix("cpu")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if n == cpu {
            continue;
        }
        let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        let all: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        busy += all.saturating_sub(idle);
        total += all;
    }
    (busy, total)
}

impl Sample {
    pub fn pps(&self) -> f64 {
        self.delivered as f64 / self.wall.as_secs_f64()
    }
}

/// Drains `ring` without waiting; returns how many `OWNER_CHANGED` events
/// it held.
pub fn drain_owner_changes(ring: &mut RingBuf<MapData>) -> u64 {
    let mut changes = 0;
    events::drain(ring, |e| {
        if matches!(e, events::DataplaneEvent::OwnerChanged(_)) {
            changes += 1;
        }
    });
    changes
}

// Drop order is field order: programs and links first, then the pins, then
// the namespaces.
pub struct Env {
    pub dp: Dataplane,
    /// The product's maps opened a second time from their pins (the
    /// `Dataplane` handle is borrowed whole by `program()`).
    pub maps: Maps,
    pub events: RingBuf<MapData>,
    pub progs: BenchProgs,
    counter_links: Vec<(String, XdpLinkId)>,
    pub havip_count: u32,
    pub generator_cpu: usize,
    pub realtime: bool,
    pin: PinDir,
    pub lab: BenchLab,
}

impl Env {
    pub fn create(params: &Params) -> Result<Self> {
        let lab = BenchLab::create()?;
        let pin = PinDir::for_bench();
        let mut dp = Dataplane::load(pin.path()).context("loading the havip XDP program")?;
        let events = dp
            .maps
            .events
            .take()
            .context("EVENTS ring buffer already taken")?;
        let maps = Maps::open_pinned(pin.path()).context("opening the pinned maps")?;
        let progs = BenchProgs::load(OWNER_A_MAC, GATEWAY_MAC, lab.ho0)?;
        let mut env = Self {
            dp,
            maps,
            events,
            progs,
            counter_links: Vec::new(),
            havip_count: 0,
            generator_cpu: params.generator_cpu,
            realtime: params.realtime,
            pin,
            lab,
        };
        // Receivers on both members' interfaces (an XDP program there is also
        // what makes a veth accept redirected frames).
        for (ns, ifname) in [(&env.lab.owner_a, "o0"), (&env.lab.owner_b, "o1")] {
            let progs = &mut env.progs;
            let link = topo::in_ns(ns, || progs.attach_xdp(progs::PROG_COUNT, ifname))?;
            env.counter_links.push((ifname.to_owned(), link));
        }
        // DEVMAP entries resolve ifindexes in the writer's namespace.
        let (progs, ho0, hc0) = (&mut env.progs, env.lab.ho0, env.lab.hc0);
        let port = PortInfo {
            vswitch_id: VSWITCH,
            vpc_id: 1,
            flags: port_flags::INSTANCE,
            gateway_mac: GATEWAY_MAC,
            ..PortInfo::default()
        };
        let owner = crate::control_owner(1, 0, ho0, OWNER_A_MAC);
        topo::in_ns(&env.lab.host, || {
            progs.set_bare_target(ho0)?;
            progs.set_ladder(hc0, port, Self::havip0_key(), owner)
        })?;
        env.configure(1)?;
        Ok(env)
    }

    /// What was measured: the product program's kernel tag, sizes and the
    /// git commit of the tree it was built from.
    pub fn product_info(&mut self) -> serde_json::Value {
        let info = self.dp.program().ok().and_then(|p| p.info().ok());
        let git = std::process::Command::new("git")
            .args([
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        serde_json::json!({
            "program": havip_common::names::PROG_XDP,
            "tag": info.as_ref().map(|i| format!("{:016x}", i.tag())),
            "jited_bytes": info.as_ref().map(|i| i.size_jitted()),
            "xlated_bytes": info.as_ref().and_then(|i| i.size_translated()),
            "verified_insns": info.as_ref().and_then(|i| i.verified_instruction_count()),
            "git_head_at_run": git,
        })
    }

    pub fn pin_dir(&self) -> &std::path::Path {
        self.pin.path()
    }

    /// The desired state for `n` HaVips: all owned by member A (ho0/o0);
    /// HaVip 0 also bound to member B (ho1/o1).
    pub fn desired(&self, n: u32) -> Desired {
        let port = |ifindex| DesiredPort {
            ifindex,
            vswitch_id: VSWITCH,
            vpc_id: 1,
            flags: port_flags::INSTANCE,
            gateway_mac: GATEWAY_MAC,
        };
        let a = DesiredBinding {
            ifindex: self.lab.ho0,
            mac: OWNER_A_MAC,
        };
        let b = DesiredBinding {
            ifindex: self.lab.ho1,
            mac: OWNER_B_MAC,
        };
        let havips = (0..n)
            .map(|i| {
                let addr = havip_addr(i);
                DesiredHavip {
                    key: HavipKey {
                        vswitch_id: VSWITCH,
                        addr: addr.octets(),
                    },
                    vpc_id: 1,
                    id: i,
                    virtual_mac: virtual_mac(addr.octets()),
                    bindings: if i == 0 { vec![a, b] } else { vec![a] },
                    initial_owner: Some(a),
                }
            })
            .collect();
        Desired {
            ports: vec![port(self.lab.hc0), port(self.lab.ho0), port(self.lab.ho1)],
            havips,
            config: DataplaneConfig::default(),
            ..Desired::default()
        }
    }

    /// Reconciles the maps to `n` HaVips (in the host namespace: DEVMAP
    /// entries resolve ifindexes there). Returns how long it took.
    pub fn configure(&mut self, n: u32) -> Result<Duration> {
        let desired = self.desired(n);
        let start = Instant::now();
        self.reconcile(&desired)
            .with_context(|| format!("reconciling {n} HaVips"))?;
        self.havip_count = n;
        Ok(start.elapsed())
    }

    /// Reconciles the maps to `desired`, in the host namespace (DEVMAP
    /// entries resolve ifindexes there).
    pub fn reconcile(&mut self, desired: &Desired) -> Result<()> {
        let dp = &mut self.dp;
        topo::in_ns(&self.lab.host, || {
            dataplane::reconcile(&mut dp.maps, desired).map_err(anyhow::Error::from)
        })?;
        Ok(())
    }

    pub fn havip0_key() -> HavipKey {
        HavipKey {
            vswitch_id: VSWITCH,
            addr: HAVIP_BASE.octets(),
        }
    }

    /// ifindex and MAC of the current owner of HaVip 0.
    pub fn owner0(&self) -> Result<(u32, [u8; 6])> {
        let o = self
            .maps
            .owners
            .get(&Self::havip0_key(), 0)
            .context("reading OWNERS of HaVip 0")?;
        Ok((o.ifindex, o.mac))
    }

    /// Makes member A the owner of HaVip 0 again (after claims by B), the way
    /// keepalived would: a gratuitous ARP from A through the program.
    pub fn ensure_owner_a(&mut self) -> Result<()> {
        if self.owner0()? == (self.lab.ho0, OWNER_A_MAC) {
            return Ok(());
        }
        let frame = frames::garp(OWNER_A_MAC, HAVIP_BASE).bytes();
        let ho0 = self.lab.ho0;
        let prog = self.dp.program()?;
        topo::in_ns(&self.lab.host, || {
            progs::run_once(prog, &frame, ho0, 1, None)
        })?;
        events::drain(&mut self.events, |_| {});
        if self.owner0()? != (self.lab.ho0, OWNER_A_MAC) {
            bail!("member A's claim did not make it the owner of HaVip 0 again");
        }
        Ok(())
    }

    /// Attaches the product to every host port (pinned links, as the agent does).
    pub fn attach_havip(&mut self) -> Result<()> {
        let dp = &mut self.dp;
        topo::in_ns(&self.lab.host, || {
            for port in HOST_PORTS {
                dp.attach(port, AttachMode::Native)
                    .with_context(|| format!("attaching havip_xdp to {port}"))?;
            }
            Ok(())
        })
    }

    pub fn detach_havip(&mut self) -> Result<()> {
        for port in HOST_PORTS {
            self.dp
                .detach(port)
                .with_context(|| format!("detaching havip_xdp from {port}"))?;
        }
        for port in HOST_PORTS {
            self.lab.wait_no_xdp(port)?;
        }
        Ok(())
    }

    /// Frames the product counted as `handled` so far.
    pub fn handled_count(&self, handled: Handled) -> u64 {
        stats::handled(&self.maps)
            .into_iter()
            .find(|(h, _)| *h == handled)
            .map_or(0, |(_, c)| c.packets)
    }

    /// One measurement ([`Env::measure`]) with the product attached to every
    /// host port. Fails when the product counted fewer frames as `handled`
    /// than arrived: another path delivered them.
    pub fn measure_havip(
        &mut self,
        traffic: &Traffic,
        packets: u32,
        handled: Handled,
    ) -> Result<Sample> {
        self.attach_havip()?;
        let before = self.handled_count(handled);
        let sample = self.measure(traffic, packets);
        let counted = self.handled_count(handled).saturating_sub(before);
        let detached = self.detach_havip();
        let sample = sample?;
        detached?;
        if sample.delivered > 0 && counted < sample.delivered {
            bail!(
                "havip counted {counted} frames {} but {} arrived: another path delivered them",
                handled.name(),
                sample.delivered
            );
        }
        Ok(sample)
    }

    /// Traffic from the client to the first `n` HaVips (dst MAC: HaVip 0's
    /// virtual MAC, as proxy ARP answered it).
    pub fn havip_traffic(n: u32) -> Traffic {
        Traffic {
            dst_mac: virtual_mac(HAVIP_BASE.octets()),
            src_mac: CLIENT_MAC,
            src: CLIENT_IP,
            dst: HAVIP_BASE,
            dst_count: n,
        }
    }

    /// Traffic as on a plain bridge: to the owner's own MAC.
    pub fn bridge_traffic() -> Traffic {
        Traffic {
            dst_mac: OWNER_A_MAC,
            ..Self::havip_traffic(1)
        }
    }

    /// One throughput measurement: `packets` live frames from the generator
    /// (pinned to the generator CPU in the client namespace); delivered =
    /// frames counted on the members' interfaces / generator wall time.
    pub fn measure(&mut self, traffic: &Traffic, packets: u32) -> Result<Sample> {
        super::interrupt::check()?;
        self.progs.set_traffic(&traffic.config())?;
        let frame = traffic.frame();
        let before = self.progs.rx_count()?;
        let cpu_before = cpu_times_except(self.generator_cpu);
        let (progs, c0, cpu, rt) = (&self.progs, self.lab.c0, self.generator_cpu, self.realtime);
        let wall = topo::in_ns(&self.lab.client, || {
            progs::pin_thread(cpu, rt)?;
            progs.generate(&frame, c0, packets)
        })?;
        // Let the last NAPI batches land before reading the counter.
        std::thread::sleep(Duration::from_millis(30));
        let delivered = self.progs.rx_count()?.saturating_sub(before);
        let cpu_after = cpu_times_except(self.generator_cpu);
        let total = cpu_after.1.saturating_sub(cpu_before.1);
        let others_busy = if total == 0 {
            0.0
        } else {
            cpu_after.0.saturating_sub(cpu_before.0) as f64 / total as f64
        };
        Ok(Sample {
            sent: u64::from(packets),
            delivered,
            wall,
            others_busy,
        })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (_, link) in std::mem::take(&mut self.counter_links) {
            let _ = self.progs.detach_xdp(progs::PROG_COUNT, link);
        }
        for port in HOST_PORTS {
            let _ = self.dp.detach(port);
        }
        self.lab.remove_clsact();
    }
}

pub fn havip_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(HAVIP_BASE).wrapping_add(i))
}
