//! The control-plane benchmark's code path on a small scale: a store with
//! thousands of bound HaVips reopens complete, churns under concurrent
//! callers and over the API, and an agent cold start reconciles it into the
//! maps. (The figures themselves are reported by `cargo xtask bench`.)

#[test]
fn control_plane_bench_runs_on_a_small_store() {
    let f = havip_tests::control_bench::measure(2_000, 2_000).expect("control-plane bench");
    println!("{f:#?}");
    println!(
        "HTTP API / in process (16 callers each, same run): {:.2}x",
        f.api_ops_per_sec_16_clients / f.ops_per_sec_16_callers
    );
    assert_eq!(f.havips, 2_000);
    assert!(f.ops_per_sec_1_caller > 0.0 && f.ops_per_sec_16_callers > 0.0);
    assert!(f.api_ops_per_sec_16_clients > 0.0);
    assert!(f.agent_cold_start_ms > 0.0 && f.agent_warm_start_ms > 0.0);
}
