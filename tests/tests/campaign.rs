//! A short randomized frame campaign (fixed seed) through `BPF_PROG_TEST_RUN`:
//! every frame is checked against the data plane's invariants (see
//! `havip_tests::campaign`). The full run is `cargo xtask fuzz`.

use std::time::Duration;

use havip_tests::{
    campaign::{self, Config},
    TestBed,
};

const SEED: u64 = 0x4861_5669_7031;
const FRAMES: u64 = 20_000;

#[test]
fn campaign_short_run_keeps_every_invariant() {
    let mut bed = TestBed::new();
    let report = campaign::run(&mut bed, &Config::new(SEED, FRAMES), |_| {});
    println!("{report}");
    assert_eq!(report.violation_count, 0, "{report}");
    assert_eq!(report.generated, FRAMES);
    assert_eq!(report.ran + report.skipped_short, FRAMES);
    assert!(
        report.elapsed < Duration::from_secs(60),
        "the short campaign took {:?}",
        report.elapsed
    );
    // The campaign must reach the interesting paths, not only parse errors.
    let reached = |name: &str| report.outcomes.keys().any(|k| k.contains(name));
    for outcome in [
        "forwarded",
        "proxy_arp_replied",
        "claim_accepted",
        "passed_malformed",
        "no_owner",
        "arp_sender_mismatch",
        "claim_unbound",
    ] {
        assert!(reached(outcome), "no frame reached {outcome}:\n{report}");
    }
    assert!(report.owner_changes > 0, "no owner changed:\n{report}");
    for invariant in [
        "passed_untouched",
        "redirect_to_owner",
        "redirect_proxy_arp",
        "owner_change_authorised",
        "claim_takes_effect",
    ] {
        assert!(
            report.checked.get(invariant).copied().unwrap_or(0) > 0,
            "invariant {invariant} never exercised:\n{report}"
        );
    }
}

#[test]
fn campaign_frames_are_reproducible() {
    let bed = TestBed::new();
    let pools = campaign::pools(&bed);
    for index in [0, 1, 977, 19_999] {
        let a = pools.generate(&mut campaign::rng::Rng::for_frame(SEED, index));
        let b = pools.generate(&mut campaign::rng::Rng::for_frame(SEED, index));
        assert_eq!(a.frame, b.frame, "frame {index} differs between draws");
        assert_eq!(a.ingress, b.ingress);
    }
}
