//! Per-packet program cost: non-live `BPF_PROG_TEST_RUN` of the product
//! program on each of its paths, next to the bare redirect's.
//!
//! `TestRunResult::duration` is what the kernel reports: the elapsed time of
//! the whole run divided by `repeat` (net/bpf/test_run.c,
//! `bpf_test_timer_continue`), truncated to whole ns — a per-packet average.
//!
//! A non-live run does **not** restore the frame between repetitions. Paths
//! that leave their frame unchanged for the next repetition (forward,
//! pass-through, claim refresh, refused claim) use one run with a large
//! `repeat`. Proxy ARP turns the request into a reply in place (the next
//! repetition would take the claim path) and an owner switch needs
//! alternating frames, so those two are timed as series of `repeat = 1`
//! calls (each call copies a fresh frame in), corrected by the fixed cost a
//! `repeat = 1` call adds: that of the bare redirect measured both ways.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use aya::programs::Xdp;
use havip::dataplane::{events, Maps};
use serde_json::{json, Value};

use super::{
    env::{drain_owner_changes, Env, CLIENT_IP, HAVIP_BASE, OTHER_IP},
    goals,
    progs::{self, xdp_action},
    report::{summary_value, Report},
    stats::Summary,
    topo::{self, CLIENT_MAC, GATEWAY_MAC, OWNER_A_MAC, OWNER_B_MAC},
    Bench, Params, Section,
};
use crate::frames;

/// Report keys under `ns_per_pkt`, in display order.
pub const PATHS: [(&str, &str); 8] = [
    ("empty_xdp_pass", "empty XDP_PASS (test loop itself)"),
    ("bare_redirect", "bare redirect"),
    ("havip_forward", "havip: forward to HaVip"),
    ("havip_pass_through", "havip: pass-through (not a HaVip)"),
    (
        "havip_claim_refresh",
        "havip: claim refresh (GARP from owner)",
    ),
    (
        "havip_claim_switch",
        "havip: claim switch (A/B alternating)",
    ),
    ("havip_claim_refused", "havip: refused claim (unbound)"),
    ("havip_proxy_arp", "havip: proxy ARP reply"),
];

fn owner_of(maps: &Maps) -> Result<(u32, [u8; 6])> {
    let o = maps
        .owners
        .get(&Env::havip0_key(), 0)
        .context("reading OWNERS of HaVip 0")?;
    Ok((o.ifindex, o.mac))
}

/// XDP_TX or a devmap redirect back out of the ingress port: both are how a
/// reply leaves (the product has used either for proxy ARP).
pub const REPLY: u32 = u32::MAX;

fn expect(what: &str, got: u32, want: u32) -> Result<()> {
    let ok = if want == REPLY {
        got == xdp_action::TX || got == xdp_action::REDIRECT
    } else {
        got == want
    };
    if !ok {
        bail!("{what}: program returned {got}, expected {want}");
    }
    Ok(())
}

/// ns/packet of one `repeat` run.
fn repeated(
    prog: &Xdp,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    want: u32,
    what: &str,
) -> Result<f64> {
    let r = progs::run_once(prog, frame, ifindex, repeat, None)?;
    expect(what, r.return_value, want)?;
    Ok(r.duration.as_nanos() as f64)
}

/// Mean kernel-reported ns of `calls` `repeat = 1` runs, cycling through
/// `frames` (frame, ingress ifindex); `between` runs after every call.
fn series(
    prog: &Xdp,
    frames: &[(Vec<u8>, u32)],
    calls: u32,
    want: u32,
    what: &str,
    mut between: impl FnMut() -> Result<()>,
) -> Result<f64> {
    let mut total = 0u128;
    for i in 0..calls as usize {
        let (frame, ifindex) = &frames[i % frames.len()];
        let r = progs::run_once(prog, frame, *ifindex, 1, None)?;
        expect(what, r.return_value, want)?;
        total += r.duration.as_nanos();
        between()?;
    }
    Ok(total as f64 / f64::from(calls.max(1)))
}

pub struct NsPerPacket;

struct Frames {
    forward: Vec<u8>,
    pass: Vec<u8>,
    claim_a: Vec<u8>,
    claim_b: Vec<u8>,
    refused: Vec<u8>,
    proxy: Vec<u8>,
}

impl Frames {
    fn new() -> Self {
        let payload = [0x5a; progs::PAYLOAD_LEN];
        Self {
            forward: Env::havip_traffic(1).frame(),
            pass: frames::udp_frame(
                GATEWAY_MAC,
                CLIENT_MAC,
                CLIENT_IP,
                OTHER_IP,
                40000,
                9,
                &payload,
            )
            .bytes(),
            claim_a: frames::garp(OWNER_A_MAC, HAVIP_BASE).bytes(),
            claim_b: frames::garp(OWNER_B_MAC, HAVIP_BASE).bytes(),
            refused: frames::garp(CLIENT_MAC, HAVIP_BASE).bytes(),
            proxy: frames::arp_request(CLIENT_MAC, CLIENT_IP, HAVIP_BASE).bytes(),
        }
    }
}

impl Section for NsPerPacket {
    fn name(&self) -> &'static str {
        "ns_per_pkt"
    }

    fn steps(&self, params: &Params) -> u64 {
        params.reps as u64
    }

    fn run(&mut self, bench: &mut Bench, report: &mut Report) -> Result<()> {
        let (env, progress, params) = bench.env_and_progress()?;
        let params = params.clone();
        env.configure(1)?;
        env.ensure_owner_a()?;
        let f = Frames::new();
        let (hc0, ho0, ho1) = (env.lab.hc0, env.lab.ho0, env.lab.ho1);
        let host = &env.lab.host;
        let product: &Xdp = env.dp.program()?;
        let pass = env.progs.xdp(progs::PROG_PASS)?;
        let bare = env.progs.xdp(progs::PROG_BARE)?;
        let sketch = env.progs.xdp(progs::PROG_SKETCH)?;
        let sketch_array = env.progs.xdp(progs::PROG_SKETCH_ARRAY)?;
        let mut ladder = BTreeMap::new();
        for &(prog, _, _) in progs::LADDER.iter().chain(&progs::ARRAY_LADDER) {
            ladder.insert(prog, env.progs.xdp(prog)?);
        }
        let maps = &env.maps;
        let ring = &mut env.events;

        let (cpu, rt) = (params.generator_cpu, params.realtime);
        let per_rep: Vec<BTreeMap<&'static str, f64>> = topo::in_ns(host, || {
            progs::pin_thread(cpu, rt)?;
            // Each path does what it should, once, before it is timed.
            let mut out = vec![0u8; 256];
            let r = progs::run_once(product, &f.forward, hc0, 1, Some(&mut out))?;
            expect("havip forward", r.return_value, xdp_action::REDIRECT)?;
            if out[0..6] != OWNER_A_MAC || out[6..12] != GATEWAY_MAC {
                bail!("havip forward: output MACs are not owner/gateway");
            }
            let before = havip::dataplane::stats::handled(maps);
            let r = progs::run_once(product, &f.proxy, hc0, 1, Some(&mut out))?;
            if expect("havip proxy ARP", r.return_value, REPLY).is_err() {
                let after = havip::dataplane::stats::handled(maps);
                let moved: Vec<_> = before
                    .iter()
                    .zip(&after)
                    .filter(|(b, a)| b.1.packets != a.1.packets)
                    .map(|(_, a)| a.0.name())
                    .collect();
                bail!(
                    "havip proxy ARP: program returned {} (counted as {moved:?}), expected XDP_TX or XDP_REDIRECT",
                    r.return_value,
                );
            }
            let vmac = havip_common::virtual_mac(HAVIP_BASE.octets());
            if out[6..12] != vmac || out[21] != 2 || out[22..28] != vmac {
                bail!("havip proxy ARP: output is not a reply from the virtual MAC");
            }
            let r = progs::run_once(product, &f.claim_b, ho1, 1, None)?;
            expect("havip claim B", r.return_value, xdp_action::DROP)?;
            if owner_of(maps)? != (ho1, OWNER_B_MAC) {
                bail!("havip claim B: the owner did not switch");
            }
            progs::run_once(product, &f.claim_a, ho0, 1, None)?;
            if owner_of(maps)? != (ho0, OWNER_A_MAC) {
                bail!("havip claim A: the owner did not switch back");
            }
            events::drain(ring, |_| {});

            let mut reps = Vec::new();
            for rep in 0..params.reps {
                super::interrupt::check()?;
                progress.step(format!("ns/packet {}/{}", rep + 1, params.reps));
                let n = params.ns_repeat;
                let mut m = BTreeMap::new();
                m.insert(
                    "empty_xdp_pass",
                    repeated(pass, &f.forward, hc0, n, xdp_action::PASS, "pass")?,
                );
                let bare_n = repeated(bare, &f.forward, hc0, n, xdp_action::REDIRECT, "bare")?;
                m.insert("bare_redirect", bare_n);
                m.insert(
                    "havip_forward",
                    repeated(
                        product,
                        &f.forward,
                        hc0,
                        n,
                        xdp_action::REDIRECT,
                        "havip forward",
                    )?,
                );
                m.insert(
                    "havip_pass_through",
                    repeated(
                        product,
                        &f.pass,
                        hc0,
                        n,
                        xdp_action::PASS,
                        "havip pass-through",
                    )?,
                );
                m.insert(
                    "havip_claim_refresh",
                    repeated(
                        product,
                        &f.claim_a,
                        ho0,
                        n,
                        xdp_action::DROP,
                        "havip claim refresh",
                    )?,
                );
                m.insert(
                    "havip_claim_refused",
                    repeated(
                        product,
                        &f.refused,
                        hc0,
                        n,
                        xdp_action::DROP,
                        "havip refused claim",
                    )?,
                );
                for &(prog, key, _) in progs::LADDER.iter().chain(&progs::ARRAY_LADDER) {
                    m.insert(
                        key,
                        repeated(ladder[prog], &f.forward, hc0, n, xdp_action::REDIRECT, prog)?,
                    );
                }
                m.insert(
                    "sketch_forward",
                    repeated(sketch, &f.forward, hc0, n, xdp_action::REDIRECT, "sketch")?,
                );
                m.insert(
                    "sketch_array_forward",
                    repeated(
                        sketch_array,
                        &f.forward,
                        hc0,
                        n,
                        xdp_action::REDIRECT,
                        "array sketch",
                    )?,
                );
                events::drain(ring, |_| {});

                let calls = params.ns_single_calls;
                let bare_1 = series(
                    bare,
                    &[(f.forward.clone(), hc0)],
                    calls,
                    xdp_action::REDIRECT,
                    "bare",
                    || Ok(()),
                )?;
                let overhead = (bare_1 - bare_n).max(0.0);
                m.insert("single_call_overhead", overhead);
                let proxy = series(
                    product,
                    &[(f.proxy.clone(), hc0)],
                    calls,
                    REPLY,
                    "havip proxy ARP",
                    || Ok(()),
                )?;
                m.insert("havip_proxy_arp", (proxy - overhead).max(0.0));
                let mut changes = 0u64;
                // Starts with B: A owns it now.
                let claims = [(f.claim_b.clone(), ho1), (f.claim_a.clone(), ho0)];
                let switch = series(
                    product,
                    &claims,
                    calls,
                    xdp_action::DROP,
                    "havip claim switch",
                    || {
                        changes += drain_owner_changes(ring);
                        Ok(())
                    },
                )?;
                if changes != u64::from(calls) {
                    bail!("claim switch: {changes} owner changes for {calls} alternating claims");
                }
                m.insert("havip_claim_switch", (switch - overhead).max(0.0));
                // The same with the ring buffer left undrained (an agent that
                // fell behind): records are committed without a wake-up until
                // a quarter of the ring (64 KiB, ~900 records of 72 B) waits,
                // then each one forces a wake-up. Fewer calls than the ring
                // holds (256 KiB / 72 B), drained afterwards.
                let quiet_calls = calls.min(2_000);
                let quiet = series(
                    product,
                    &claims,
                    quiet_calls,
                    xdp_action::DROP,
                    "havip claim switch (no wakeup)",
                    || Ok(()),
                )?;
                let queued = drain_owner_changes(ring);
                if queued != u64::from(quiet_calls) {
                    bail!("claim switch (no wakeup): {queued} events for {quiet_calls} claims");
                }
                m.insert("havip_claim_switch_no_wakeup", (quiet - overhead).max(0.0));
                // Leave member A the owner.
                if owner_of(maps)? != (ho0, OWNER_A_MAC) {
                    progs::run_once(product, &f.claim_a, ho0, 1, None)?;
                    events::drain(ring, |_| {});
                }
                progress.log(format!(
                    "  ns/packet rep {}: forward {:.0}, bare {:.0}, pass-through {:.0}, refresh {:.0}, switch {:.0}, proxy ARP {:.0}",
                    rep + 1,
                    m["havip_forward"],
                    m["bare_redirect"],
                    m["havip_pass_through"],
                    m["havip_claim_refresh"],
                    m["havip_claim_switch"],
                    m["havip_proxy_arp"],
                ));
                reps.push(m);
                progress.inc();
            }
            Ok(reps)
        })?;

        let summary = |key: &str| -> Option<Summary> {
            Summary::of(
                &per_rep
                    .iter()
                    .filter_map(|m| m.get(key).copied())
                    .collect::<Vec<_>>(),
            )
        };
        let mut value = json!({
            "unit": "ns",
            "method": format!(
                "non-live BPF_PROG_TEST_RUN, kernel-reported duration (per-repetition average, whole ns); \
                 repeat {} for forward/pass-through/claim refresh/refused claim/bare/empty; \
                 havip_proxy_arp and havip_claim_switch: mean of {} repeat=1 calls minus the \
                 repeat=1 overhead (single_call_overhead)",
                params.ns_repeat, params.ns_single_calls
            ),
        });
        let mut table =
            String::from("| path | median ns/packet | min | max |\n| --- | --- | --- | --- |\n");
        for (key, label) in PATHS.iter().chain(&[
            (
                "havip_claim_switch_no_wakeup",
                "havip: claim switch, ring left undrained (forced wake-ups past 1/4 full)",
            ),
            (
                "single_call_overhead",
                "repeat=1 call overhead (subtracted)",
            ),
        ]) {
            if let Some(s) = summary(key) {
                value[*key] = summary_value("ns", &s);
                value[*key]["label"] = Value::from(*label);
                table.push_str(&format!(
                    "| {label} (`{key}`) | **{:.1}** | {:.1} | {:.1} |\n",
                    s.median, s.min, s.max
                ));
            }
        }
        // What each piece of the forward path costs: the ladder's steps,
        // each with its increment over the previous one.
        let mut ladder_md = String::from(
            "The first version of the product's forward path (PORTS and OWNERS hash lookups, \
             DEVMAP_HASH redirect, two per-CPU counters, MACs assigned as `[u8; 6]`) rebuilt one \
             piece at a time in bench-only programs (same map types, keys and values; same frame, \
             ingress hc0, non-live test_run), then two cheaper sketches; the product now \
             follows proposal B with an index in front of its rows (4-byte index entries, packed \
             32-byte rows with the owner word and its copy: one more dependent load than the \
             sketch). The product's own figure is the last line:\n\n\
             | step | median ns/packet | + over previous |\n| --- | --- | --- |\n",
        );
        let mut previous = summary("bare_redirect").map(|s| s.median);
        if let Some(p) = previous {
            ladder_md.push_str(&format!(
                "| bare redirect (DEVMAP, word stores, no lookups) | {p:.1} | |\n"
            ));
        }
        for (_, key, what) in progs::LADDER.iter().copied().chain([
            (
                "",
                "sketch_forward",
                "proposal A: PORTS as array, 1 OWNERS hash lookup, word stores, 1 counter",
            ),
            (
                "",
                "sketch_array_forward",
                "proposal B: no hash helper at all (PORTS and an open-addressing HaVip table in arrays; the product adds an index in front of its rows)",
            ),
        ]) {
            if let Some(s) = summary(key) {
                value[key] = summary_value("ns", &s);
                value[key]["label"] = Value::from(what);
                let delta = if key.starts_with("sketch") {
                    summary("bare_redirect")
                        .map_or_else(String::new, |b| format!("{:.2}× bare", s.median / b.median))
                } else {
                    previous.map_or_else(String::new, |p| format!("{:+.1}", s.median - p))
                };
                ladder_md.push_str(&format!(
                    "| {what} (`{key}`) | {:.1} | {delta} |\n",
                    s.median
                ));
                if !key.starts_with("sketch") {
                    previous = Some(s.median);
                }
            }
        }
        // The product's pieces beyond the array sketch, each over the
        // previous step.
        let mut previous = summary("sketch_array_forward").map(|s| s.median);
        for (_, key, what) in progs::ARRAY_LADDER {
            if let Some(s) = summary(key) {
                value[key] = summary_value("ns", &s);
                value[key]["label"] = Value::from(what);
                let delta = previous.map_or_else(String::new, |p| format!("{:+.1}", s.median - p));
                ladder_md.push_str(&format!(
                    "| {what} (`{key}`) | {:.1} | {delta} |\n",
                    s.median
                ));
                previous = Some(s.median);
            }
        }
        if let Some(p) = summary("havip_forward") {
            ladder_md.push_str(&format!(
                "| **the product's forward path** (`havip_forward`) | {:.1} | |\n",
                p.median
            ));
        }
        report.md("Forward path: what costs what", ladder_md);
        report.set("ns_per_pkt", value);
        let ratio = summary("havip_forward")
            .zip(summary("bare_redirect"))
            .map(|(f, b)| f.median / b.median);
        report.ratio(goals::FORWARD_NS_VS_BARE, ratio);
        report.md("Per-packet program cost (non-live test_run)", table);
        Ok(())
    }
}

/// Not part of a normal run (`havip-bench --spin-forward SECS`): runs the
/// product's forward path by non-live test_run for `seconds`, pinned to the
/// generator CPU, so that `perf record -C <cpu>` or `bpftool prog profile`
/// can be pointed at it.
pub struct SpinForward {
    pub seconds: u64,
}

impl Section for SpinForward {
    fn name(&self) -> &'static str {
        "spin_forward"
    }

    fn steps(&self, _: &Params) -> u64 {
        1
    }

    fn run(&mut self, bench: &mut Bench, _: &mut Report) -> Result<()> {
        let (env, progress, params) = bench.env_and_progress()?;
        let (cpu, rt) = (params.generator_cpu, params.realtime);
        env.configure(1)?;
        env.ensure_owner_a()?;
        let frame = Env::havip_traffic(1).frame();
        let hc0 = env.lab.hc0;
        let host = &env.lab.host;
        let product: &Xdp = env.dp.program()?;
        progress.log(format!(
            "  spinning havip_xdp (forward) on CPU {cpu} for {} s: e.g. perf record -C {cpu} -g",
            self.seconds
        ));
        let until = std::time::Instant::now() + std::time::Duration::from_secs(self.seconds);
        let runs = topo::in_ns(host, || {
            progs::pin_thread(cpu, rt)?;
            let mut runs = Vec::new();
            while std::time::Instant::now() < until {
                super::interrupt::check()?;
                runs.push(repeated(
                    product,
                    &frame,
                    hc0,
                    1_000_000,
                    xdp_action::REDIRECT,
                    "forward",
                )?);
            }
            Ok(runs)
        })?;
        progress.log(format!(
            "  {} runs of 1M, ns/packet {:?}",
            runs.len(),
            Summary::of(&runs).map(|s| s.median)
        ));
        progress.inc();
        Ok(())
    }
}
