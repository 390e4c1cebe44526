//! Real keepalived (Debian's, unicast VRRP) in two instances: the HaVip
//! follows the VRRP master through a link failure and back.

use havip_tests::keepalived::{failover, require_keepalived, Vrrp};

fn check(vrrp: Vrrp) -> havip_tests::keepalived::FailoverReport {
    require_keepalived();
    let r = failover(vrrp).expect("keepalived failover scenario");
    println!("{r:#?}");
    assert_eq!(
        r.tcp_before, "a",
        "TCP to the HaVip must reach the first master"
    );
    assert_eq!(
        r.tcp_after, "b",
        "after failover TCP must reach the standby"
    );
    assert!(r.received_a > 0, "a received nothing while master");
    assert!(r.received_b > 0, "b received nothing after taking over");
    assert_eq!(
        r.to_a_while_down, 0,
        "frames reached a while its link was down"
    );
    // The VRRP down timer is 3 adverts plus skew; the data plane adds nothing
    // measurable. Generous bound so a loaded CI machine does not flake.
    let bound_ms = vrrp.advert_int * 1000.0 * 4.0 + 1500.0;
    assert!(
        r.loss_window_ms <= bound_ms,
        "loss window {} ms above {bound_ms} ms",
        r.loss_window_ms
    );
    r
}

#[test]
fn keepalived_vrrp2_failover_and_preempt_back() {
    let r = check(Vrrp {
        version: 2,
        advert_int: 1.0,
        nopreempt: false,
    });
    assert_eq!(
        r.master_after_recovery, "a",
        "a (higher priority) must preempt back"
    );
}

#[test]
fn keepalived_vrrp3_subsecond_nopreempt_stays_on_standby() {
    let r = check(Vrrp {
        version: 3,
        advert_int: 0.1,
        nopreempt: true,
    });
    assert_eq!(
        r.master_after_recovery, "b",
        "with nopreempt b must stay master"
    );
}
