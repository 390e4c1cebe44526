//! Control-plane tests without root: every limit and conflict through the
//! HTTP API (router served in-process on a temporary unix socket) and
//! through the real `havipctl` binary, each asserting the error code and an
//! unchanged state; crash safety (SIGKILL during a burst of writes); config
//! parsing and seeding; state → desired data-plane content.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use havip::{
    api::{
        self, Client, ClientError, CreateEipRequest, CreateEniRequest, CreateHaVipRequest,
        CreateInstanceRequest, CreateRouteRequest, CreateVSwitchRequest, CreateVpcRequest,
        QuotaRequest,
    },
    config::{self, Config, ConfigError},
    control::{ControlPlane, CountersSource, HaVipStatus, HavipCounters},
    desired::{desired, desired_lenient, DesiredError},
    model::{ObservedOwner, State},
    store::Store,
    validate::{apply, Member, Op},
};
use havip_common::{port_flags, virtual_mac, DataplaneConfig, HavipKey};
use tokio::sync::Notify;

// ---------------------------------------------------------------------------
// Harness

/// The API served in-process on a temporary unix socket.
struct Server {
    dir: tempfile::TempDir,
    socket: PathBuf,
    cp: Option<Arc<ControlPlane>>,
    stop: Arc<Notify>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir)
    }

    fn start_in(dir: tempfile::TempDir) -> Self {
        let socket = dir.path().join("api.sock");
        let cp = Arc::new(ControlPlane::open(dir.path().join("state.redb")).expect("open store"));
        let stop = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let (socket, cp, stop) = (socket.clone(), Arc::clone(&cp), Arc::clone(&stop));
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let l = api::bind_unix(&socket).expect("bind");
                    ready_tx.send(()).expect("ready");
                    api::serve_unix_listener(l, cp, async move { stop.notified().await })
                        .await
                        .expect("serve");
                });
            })
        };
        ready_rx.recv().expect("server ready");
        Server {
            dir,
            socket,
            cp: Some(cp),
            stop,
            thread: Some(thread),
        }
    }

    fn client(&self) -> Client {
        Client::unix(&self.socket)
    }

    fn cp(&self) -> &ControlPlane {
        self.cp.as_ref().expect("control plane")
    }

    fn state(&self) -> State {
        self.client().state().expect("GET /v1/state")
    }

    /// Stops the server and closes the store; returns the directory.
    fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    fn shutdown(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
        self.cp = None;
    }

    /// Runs the real `havipctl` against this server.
    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_havipctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run havipctl")
    }

    /// `havipctl` must succeed; returns its stdout.
    fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "havipctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn code_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Api { code, message, .. }) => {
            assert!(!message.is_empty(), "empty message for {code}");
            code
        }
        other => panic!("expected an API refusal, got {other:?}"),
    }
}

/// The request made by `api` is refused with `code` and changes nothing;
/// then the same through `havipctl cli_args`.
fn refused<T: std::fmt::Debug>(
    srv: &Server,
    code: &str,
    api: impl FnOnce(&Client) -> Result<T, ClientError>,
    cli_args: &[&str],
) {
    let before = srv.state();
    assert_eq!(code_of(api(&srv.client())), code, "API");
    assert_eq!(srv.state(), before, "API refusal {code} changed the state");

    let out = srv.ctl(cli_args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "havipctl {cli_args:?}: {stderr}"
    );
    assert!(
        stderr.starts_with(&format!("error: {code}: ")),
        "havipctl {cli_args:?} printed {stderr:?}, expected code {code}"
    );
    assert_eq!(srv.state(), before, "CLI refusal {code} changed the state");
}

/// VPC `vpc-1` (10.0.0.0/16) with `vsw-1` (10.0.1.0/24) and `vsw-2`
/// (10.0.2.0/24); instances `i-0..i-11` in vsw-1, each with primary ENI
/// `eni-N` on `hv-N`; instance `i-x` in vsw-2 with `eni-x`; secondary ENI
/// `eni-0b` of `i-0` in vsw-1.
fn fixture(c: &Client) {
    c.create_vpc(&CreateVpcRequest {
        id: "vpc-1".into(),
        cidr: "10.0.0.0/16".parse().unwrap(),
    })
    .unwrap();
    for (n, id) in ["vsw-1", "vsw-2"].iter().enumerate() {
        c.create_vswitch(&CreateVSwitchRequest {
            id: (*id).into(),
            vpc: "vpc-1".into(),
            cidr: format!("10.0.{}.0/24", n + 1).parse().unwrap(),
            gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
        })
        .unwrap();
    }
    let inst = |id: &str, vsw: &str, eni: &str, mac: &str, ifname: &str| {
        c.create_instance(&CreateInstanceRequest {
            id: id.into(),
            vswitch: vsw.into(),
        })
        .unwrap();
        c.create_eni(&CreateEniRequest {
            id: eni.into(),
            vswitch: vsw.into(),
            mac: mac.parse().unwrap(),
            interface: ifname.into(),
            instance: Some(id.into()),
            primary: true,
        })
        .unwrap();
    };
    for i in 0..12 {
        inst(
            &format!("i-{i}"),
            "vsw-1",
            &format!("eni-{i}"),
            &format!("02:00:00:00:01:{i:02x}"),
            &format!("hv-{i}"),
        );
    }
    inst("i-x", "vsw-2", "eni-x", "02:00:00:00:02:01", "hv-x");
    c.create_eni(&CreateEniRequest {
        id: "eni-0b".into(),
        vswitch: "vsw-1".into(),
        mac: "02:00:00:00:01:b0".parse().unwrap(),
        interface: "hv-0b".into(),
        instance: Some("i-0".into()),
        primary: false,
    })
    .unwrap();
}

fn create_havip(c: &Client, id: &str, vswitch: &str) {
    c.create_havip(&CreateHaVipRequest {
        id: Some(id.into()),
        vswitch: vswitch.into(),
        address: None,
    })
    .unwrap();
}

fn raise_quotas(c: &Client) {
    c.set_quotas(&QuotaRequest {
        havips_per_account: Some(100),
        havips_per_vpc: Some(100),
        havip_routes_per_vpc: None,
    })
    .unwrap();
}

// ---------------------------------------------------------------------------
// Limits and quotas

#[test]
fn quota_havips_per_vpc() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    c.set_quotas(&QuotaRequest {
        havips_per_account: Some(50),
        ..Default::default()
    })
    .unwrap();
    for n in 0..5 {
        create_havip(&c, &format!("h{n}"), "vsw-1");
    }
    let req = CreateHaVipRequest {
        id: None,
        vswitch: "vsw-2".into(),
        address: None,
    };
    refused(
        &srv,
        "QuotaExceeded.HaVipsPerVpc",
        |c| c.create_havip(&req),
        &["havip", "create", "--vswitch", "vsw-2"],
    );
    // The message names the quota.
    let e = c.create_havip(&req).unwrap_err();
    assert!(e.to_string().contains("havips_per_vpc = 5"), "{e}");
    // Raising the quota (through the CLI) lets it through.
    srv.ctl_ok(&["quota", "set", "--havips-per-vpc", "6"]);
    c.create_havip(&req).unwrap();
}

#[test]
fn quota_havips_per_account() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    // A second VPC so the per-VPC quota is not what stops us.
    c.create_vpc(&CreateVpcRequest {
        id: "vpc-2".into(),
        cidr: "172.16.0.0/16".parse().unwrap(),
    })
    .unwrap();
    c.create_vswitch(&CreateVSwitchRequest {
        id: "vsw-b".into(),
        vpc: "vpc-2".into(),
        cidr: "172.16.1.0/24".parse().unwrap(),
        gateway_mac: "02:00:00:00:00:02".parse().unwrap(),
    })
    .unwrap();
    for n in 0..3 {
        create_havip(&c, &format!("a{n}"), "vsw-1");
    }
    for n in 0..2 {
        create_havip(&c, &format!("b{n}"), "vsw-b");
    }
    refused(
        &srv,
        "QuotaExceeded.HaVipsPerAccount",
        |c| {
            c.create_havip(&CreateHaVipRequest {
                id: None,
                vswitch: "vsw-b".into(),
                address: None,
            })
        },
        &["havip", "create", "--vswitch", "vsw-b"],
    );
    let q = c.quotas().unwrap();
    assert_eq!(
        (
            q.havips_per_account,
            q.havips_per_vpc,
            q.havip_routes_per_vpc
        ),
        (5, 5, 5)
    );
    refused(
        &srv,
        "InvalidParameter.Quota",
        |c| {
            c.set_quotas(&QuotaRequest {
                havips_per_account: Some(1 << 40),
                ..Default::default()
            })
        },
        &["quota", "set", "--havips-per-account", "1099511627776"],
    );
}

#[test]
fn quota_havip_routes_per_vpc() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    for n in 0..5 {
        c.create_route(&CreateRouteRequest {
            id: Some(format!("r{n}")),
            vpc: "vpc-1".into(),
            destination: format!("192.168.{n}.0/24").parse().unwrap(),
            next_hop: "h".into(),
        })
        .unwrap();
    }
    refused(
        &srv,
        "QuotaExceeded.HaVipRoutesPerVpc",
        |c| {
            c.create_route(&CreateRouteRequest {
                id: None,
                vpc: "vpc-1".into(),
                destination: "192.168.9.0/24".parse().unwrap(),
                next_hop: "h".into(),
            })
        },
        &[
            "route",
            "create",
            "--vpc",
            "vpc-1",
            "--destination",
            "192.168.9.0/24",
            "--next-hop",
            "h",
        ],
    );
    // Deleting one (through the CLI) makes room again.
    srv.ctl_ok(&["route", "delete", "r4"]);
    c.create_route(&CreateRouteRequest {
        id: None,
        vpc: "vpc-1".into(),
        destination: "192.168.9.0/24".parse().unwrap(),
        next_hop: "h".into(),
    })
    .unwrap();
}

#[test]
fn bindings_per_havip() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    for i in 0..10 {
        c.associate_havip("h", Member::instance(format!("i-{i}")))
            .unwrap();
    }
    refused(
        &srv,
        "LimitExceeded.BindingsPerHaVip",
        |c| c.associate_havip("h", Member::instance("i-10")),
        &["havip", "associate", "h", "--instance", "i-10"],
    );
    let e = c
        .associate_havip("h", Member::instance("i-10"))
        .unwrap_err();
    assert!(e.to_string().contains("at most 10"), "{e}");
    // Also for ENIs.
    create_havip(&c, "g", "vsw-1");
    for i in 1..11 {
        c.associate_havip("g", Member::eni(format!("eni-{i}")))
            .unwrap();
    }
    refused(
        &srv,
        "LimitExceeded.BindingsPerHaVip",
        |c| c.associate_havip("g", Member::eni("eni-11")),
        &["havip", "associate", "g", "--eni", "eni-11"],
    );
}

#[test]
fn havips_per_instance_counts_eni_bindings() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    raise_quotas(&c);
    // i-0 holds 3 HaVips directly and 2 through its ENIs (eni-0, eni-0b).
    for n in 0..3 {
        create_havip(&c, &format!("d{n}"), "vsw-1");
        c.associate_havip(&format!("d{n}"), Member::instance("i-0"))
            .unwrap();
    }
    create_havip(&c, "e0", "vsw-1");
    c.associate_havip("e0", Member::eni("eni-0")).unwrap();
    create_havip(&c, "e1", "vsw-1");
    c.associate_havip("e1", Member::eni("eni-0b")).unwrap();
    // Binding the second ENI of the same instance to e0 is no new HaVip.
    c.associate_havip("e0", Member::eni("eni-0b")).unwrap();
    create_havip(&c, "n", "vsw-1");
    refused(
        &srv,
        "LimitExceeded.HaVipsPerInstance",
        |c| c.associate_havip("n", Member::instance("i-0")),
        &["havip", "associate", "n", "--instance", "i-0"],
    );
    refused(
        &srv,
        "LimitExceeded.HaVipsPerInstance",
        |c| c.associate_havip("n", Member::eni("eni-0")),
        &["havip", "associate", "n", "--eni", "eni-0"],
    );
    let e = c.associate_havip("n", Member::eni("eni-0b")).unwrap_err();
    assert!(
        e.to_string().contains("at most 5 HaVips per instance"),
        "{e}"
    );
    // Freeing one makes room.
    c.unassociate_havip("d0", Member::instance("i-0")).unwrap();
    c.associate_havip("n", Member::instance("i-0")).unwrap();
}

#[test]
fn binding_conflicts() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    c.associate_havip("h", Member::instance("i-1")).unwrap();
    refused(
        &srv,
        "Conflict.MixedBindingKinds",
        |c| c.associate_havip("h", Member::eni("eni-2")),
        &["havip", "associate", "h", "--eni", "eni-2"],
    );
    refused(
        &srv,
        "Conflict.DifferentVSwitch",
        |c| c.associate_havip("h", Member::instance("i-x")),
        &["havip", "associate", "h", "--instance", "i-x"],
    );
    create_havip(&c, "g", "vsw-1");
    refused(
        &srv,
        "Conflict.DifferentVSwitch",
        |c| c.associate_havip("g", Member::eni("eni-x")),
        &["havip", "associate", "g", "--eni", "eni-x"],
    );
    refused(
        &srv,
        "Conflict.AlreadyBound",
        |c| c.associate_havip("h", Member::instance("i-1")),
        &["havip", "associate", "h", "--instance", "i-1"],
    );
    refused(
        &srv,
        "NotFound.Binding",
        |c| c.unassociate_havip("h", Member::instance("i-2")),
        &["havip", "unassociate", "h", "--instance", "i-2"],
    );
    refused(
        &srv,
        "NotFound.HaVip",
        |c| c.associate_havip("nope", Member::instance("i-1")),
        &["havip", "associate", "nope", "--instance", "i-1"],
    );
    refused(
        &srv,
        "NotFound.Instance",
        |c| c.associate_havip("h", Member::instance("i-nope")),
        &["havip", "associate", "h", "--instance", "i-nope"],
    );
    refused(
        &srv,
        "NotFound.Eni",
        |c| c.associate_havip("g", Member::eni("eni-nope")),
        &["havip", "associate", "g", "--eni", "eni-nope"],
    );
    refused(
        &srv,
        "InvalidParameter.MasterNotBound",
        |c| c.set_master("h", Some("i-5")),
        &["havip", "set-master", "h", "--member", "i-5"],
    );
}

#[test]
fn delete_refusals() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    c.associate_havip("h", Member::instance("i-1")).unwrap();
    refused(
        &srv,
        "Conflict.HaVipBound",
        |c| c.delete_havip("h"),
        &["havip", "delete", "h"],
    );
    c.unassociate_havip("h", Member::instance("i-1")).unwrap();

    c.create_eip(&CreateEipRequest {
        id: Some("e".into()),
        address: "203.0.113.7".parse().unwrap(),
    })
    .unwrap();
    c.associate_eip("e", "h").unwrap();
    refused(
        &srv,
        "Conflict.HaVipHasEip",
        |c| c.delete_havip("h"),
        &["havip", "delete", "h"],
    );
    refused(
        &srv,
        "Conflict.EipAssociated",
        |c| c.delete_eip("e"),
        &["eip", "delete", "e"],
    );
    create_havip(&c, "g", "vsw-1");
    refused(
        &srv,
        "Conflict.EipAssociated",
        |c| c.associate_eip("e", "g"),
        &["eip", "associate", "e", "--havip", "g"],
    );
    c.unassociate_eip("e").unwrap();
    refused(
        &srv,
        "Conflict.EipNotAssociated",
        |c| c.unassociate_eip("e"),
        &["eip", "unassociate", "e"],
    );

    c.create_route(&CreateRouteRequest {
        id: Some("r".into()),
        vpc: "vpc-1".into(),
        destination: "192.168.0.0/24".parse().unwrap(),
        next_hop: "h".into(),
    })
    .unwrap();
    refused(
        &srv,
        "Conflict.HaVipIsRouteNextHop",
        |c| c.delete_havip("h"),
        &["havip", "delete", "h"],
    );
    refused(
        &srv,
        "NotFound.HaVip",
        |c| c.delete_havip("nope"),
        &["havip", "delete", "nope"],
    );
    c.delete_route("r").unwrap();
    refused(
        &srv,
        "NotFound.Route",
        |c| c.delete_route("r"),
        &["route", "delete", "r"],
    );
    srv.ctl_ok(&["havip", "delete", "h"]);
    assert!(!srv.state().havips.contains_key("h"));
}

#[test]
fn address_rules() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    let create = |addr: &'static str| {
        move |c: &Client| {
            c.create_havip(&CreateHaVipRequest {
                id: None,
                vswitch: "vsw-1".into(),
                address: Some(addr.parse().unwrap()),
            })
        }
    };
    let cli = |addr: &'static str| ["havip", "create", "--vswitch", "vsw-1", "--address", addr];
    refused(
        &srv,
        "InvalidParameter.AddressOutsideVSwitch",
        create("10.0.2.10"),
        &cli("10.0.2.10"),
    );
    for reserved in ["10.0.1.0", "10.0.1.1", "10.0.1.255"] {
        refused(
            &srv,
            "InvalidParameter.AddressReserved",
            create(reserved),
            &cli(reserved),
        );
    }
    // Allocation skips the reserved addresses.
    let v = c
        .create_havip(&CreateHaVipRequest {
            id: Some("first".into()),
            vswitch: "vsw-1".into(),
            address: None,
        })
        .unwrap();
    assert_eq!(v.address.to_string(), "10.0.1.2");
    refused(
        &srv,
        "Conflict.AddressInUse",
        create("10.0.1.2"),
        &cli("10.0.1.2"),
    );
    c.create_eip(&CreateEipRequest {
        id: Some("e".into()),
        address: "10.0.1.50".parse().unwrap(),
    })
    .unwrap();
    refused(
        &srv,
        "Conflict.AddressInUse",
        create("10.0.1.50"),
        &cli("10.0.1.50"),
    );
    refused(
        &srv,
        "Conflict.AddressInUse",
        |c| {
            c.create_eip(&CreateEipRequest {
                id: None,
                address: "10.0.1.2".parse().unwrap(),
            })
        },
        &["eip", "create", "--address", "10.0.1.2"],
    );
    refused(
        &srv,
        "NotFound.VSwitch",
        |c| {
            c.create_havip(&CreateHaVipRequest {
                id: None,
                vswitch: "vsw-9".into(),
                address: None,
            })
        },
        &["havip", "create", "--vswitch", "vsw-9"],
    );
    refused(
        &srv,
        "Conflict.AlreadyExists",
        |c| {
            c.create_havip(&CreateHaVipRequest {
                id: Some("first".into()),
                vswitch: "vsw-1".into(),
                address: None,
            })
        },
        &["havip", "create", "--vswitch", "vsw-1", "--id", "first"],
    );
}

#[test]
fn route_conflicts() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    c.create_vpc(&CreateVpcRequest {
        id: "vpc-2".into(),
        cidr: "172.16.0.0/16".parse().unwrap(),
    })
    .unwrap();
    c.create_route(&CreateRouteRequest {
        id: Some("r".into()),
        vpc: "vpc-1".into(),
        destination: "192.168.0.0/24".parse().unwrap(),
        next_hop: "h".into(),
    })
    .unwrap();
    let route = |vpc: &'static str, dst: &'static str| {
        move |c: &Client| {
            c.create_route(&CreateRouteRequest {
                id: None,
                vpc: vpc.into(),
                destination: dst.parse().unwrap(),
                next_hop: "h".into(),
            })
        }
    };
    let cli = |vpc: &'static str, dst: &'static str| {
        [
            "route",
            "create",
            "--vpc",
            vpc,
            "--destination",
            dst,
            "--next-hop",
            "h",
        ]
    };
    refused(
        &srv,
        "Conflict.RouteDestinationExists",
        route("vpc-1", "192.168.0.0/24"),
        &cli("vpc-1", "192.168.0.0/24"),
    );
    refused(
        &srv,
        "Conflict.DifferentVpc",
        route("vpc-2", "192.168.5.0/24"),
        &cli("vpc-2", "192.168.5.0/24"),
    );
    refused(
        &srv,
        "InvalidParameter.RouteDestination",
        route("vpc-1", "10.0.1.0/25"),
        &cli("vpc-1", "10.0.1.0/25"),
    );
    refused(
        &srv,
        "NotFound.Vpc",
        route("vpc-9", "192.168.5.0/24"),
        &cli("vpc-9", "192.168.5.0/24"),
    );
}

#[test]
fn setup_conflicts() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    refused(
        &srv,
        "Conflict.CidrOverlap",
        |c| {
            c.create_vswitch(&CreateVSwitchRequest {
                id: "vsw-3".into(),
                vpc: "vpc-1".into(),
                cidr: "10.0.1.0/25".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            })
        },
        &[
            "vswitch",
            "create",
            "--id",
            "vsw-3",
            "--vpc",
            "vpc-1",
            "--cidr",
            "10.0.1.0/25",
            "--gateway-mac",
            "02:00:00:00:00:01",
        ],
    );
    refused(
        &srv,
        "Conflict.MacInUse",
        |c| {
            c.create_eni(&CreateEniRequest {
                id: "eni-new".into(),
                vswitch: "vsw-1".into(),
                mac: "02:00:00:00:01:00".parse().unwrap(),
                interface: "hv-new".into(),
                instance: None,
                primary: false,
            })
        },
        &[
            "eni",
            "create",
            "--id",
            "eni-new",
            "--vswitch",
            "vsw-1",
            "--mac",
            "02:00:00:00:01:00",
            "--interface",
            "hv-new",
        ],
    );
    refused(
        &srv,
        "Conflict.AlreadyExists",
        |c| {
            c.create_vpc(&CreateVpcRequest {
                id: "vpc-1".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
            })
        },
        &["vpc", "create", "--id", "vpc-1", "--cidr", "10.0.0.0/16"],
    );
}

#[test]
fn malformed_requests_are_400_not_panics() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    let before = srv.state();
    for (method, path, body) in [
        ("POST", "/v1/havips", "{not json"),
        ("POST", "/v1/havips", "{\"vswitch\": 5}"),
        ("POST", "/v1/havips", "{\"vswitch\": \"vsw-1\", \"bogus\": 1}"),
        ("POST", "/v1/havips", "{\"vswitch\": \"vsw-1\", \"address\": \"10.0.1\"}"),
        ("POST", "/v1/havips/h/associate", "{}"),
        (
            "POST",
            "/v1/havips/h/associate",
            "{\"instance\": \"i-1\", \"eni\": \"eni-1\"}",
        ),
        ("PUT", "/v1/quotas", "[1,2]"),
        ("POST", "/v1/vswitches", "{\"id\": \"v\", \"vpc\": \"vpc-1\", \"cidr\": \"10.0.9.0/24\", \"gateway_mac\": \"zz\"}"),
        ("POST", "/v1/vpcs", ""),
    ] {
        let (status, bytes) = c.raw(method, path, Some(body.as_bytes())).unwrap();
        let err: api::ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{method} {path} {body}: {status} {e}: {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(status, 400, "{method} {path} {body}: {err:?}");
        assert_eq!(err.code, "InvalidParameter.Body", "{body}");
    }
    let (status, bytes) = c.raw("GET", "/v2/nothing", None).unwrap();
    assert_eq!(status, 404);
    let err: api::ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(err.code, "NotFound.Path");
    let (status, _) = c.raw("PATCH", "/v1/havips", None).unwrap();
    assert_eq!(status, 404);
    assert_eq!(srv.state(), before);
}

// ---------------------------------------------------------------------------
// Describe, owners, counters, notifications

struct FakeCounters;
impl CountersSource for FakeCounters {
    fn havip_counters(&self, slot: u32) -> Option<HavipCounters> {
        Some(HavipCounters {
            packets: u64::from(slot) + 10,
            bytes: 1000,
        })
    }
}

#[test]
fn describe_status_master_epoch_counters() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    let mut changes = srv.cp().subscribe();
    let g0 = *changes.borrow_and_update();
    let v = c
        .create_havip(&CreateHaVipRequest {
            id: Some("h".into()),
            vswitch: "vsw-1".into(),
            address: Some("10.0.1.100".parse().unwrap()),
        })
        .unwrap();
    assert!(changes.has_changed().unwrap());
    assert!(*changes.borrow_and_update() > g0);
    assert_eq!(v.status, HaVipStatus::Available);
    assert_eq!((v.master.clone(), v.epoch, v.counters), (None, 0, None));
    c.associate_havip("h", Member::instance("i-1")).unwrap();
    let v = c.associate_havip("h", Member::instance("i-2")).unwrap();
    assert_eq!(v.status, HaVipStatus::InUse);
    assert_eq!(v.bindings, vec!["i-1", "i-2"]);

    // The kernel reports i-2 (its ENI's MAC) as owner.
    let cp = srv.cp();
    let vsw = cp.with_state(|s| s.vswitches["vsw-1"].dp_id);
    let g = *changes.borrow_and_update();
    let owner = ObservedOwner {
        ifindex: 42,
        mac: "02:00:00:00:01:02".parse().unwrap(),
        epoch: 7,
        changed_ns: 123,
    };
    cp.record_owner(
        HavipKey {
            vswitch_id: vsw,
            addr: [10, 0, 1, 100],
        },
        owner,
    )
    .unwrap();
    assert!(
        !changes.has_changed().unwrap(),
        "owner reports do not trigger reconciles"
    );
    assert_eq!(*changes.borrow(), g);
    cp.set_counters(Arc::new(FakeCounters));
    let v = c.get_havip("h").unwrap();
    assert_eq!(v.master.as_deref(), Some("i-2"));
    assert_eq!(v.epoch, 7);
    assert_eq!(v.counters.map(|c| c.packets), Some(u64::from(v.slot) + 10));

    // CLI: table and JSON.
    let table = srv.ctl_ok(&["havip", "list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("10.0.1.100") && table.contains("InUse") && table.contains("i-2"));
    let json: serde_json::Value =
        serde_json::from_str(&srv.ctl_ok(&["--json", "havip", "describe", "h"])).unwrap();
    assert_eq!(json["master"], "i-2");
    assert_eq!(json["status"], "InUse");
    assert_eq!(json["epoch"], 7);

    // Unbinding the standby keeps the master; unbinding the master clears it.
    c.unassociate_havip("h", Member::instance("i-1")).unwrap();
    assert_eq!(c.get_havip("h").unwrap().master.as_deref(), Some("i-2"));
    let v = c.unassociate_havip("h", Member::instance("i-2")).unwrap();
    assert_eq!(v.master, None);
    assert_eq!(v.status, HaVipStatus::Available);
    assert_eq!(v.epoch, 7);
    assert!(changes.has_changed().unwrap());

    // By slot too; unknown slots are NotFound.
    cp.record_owner_by_slot(v.slot, ObservedOwner::default())
        .unwrap();
    assert_eq!(
        cp.record_owner_by_slot(9999, ObservedOwner::default())
            .unwrap_err()
            .code(),
        "NotFound.HaVip"
    );
}

#[test]
fn cli_setup_and_listing() {
    let srv = Server::start();
    srv.ctl_ok(&["vpc", "create", "--id", "vpc-c", "--cidr", "10.9.0.0/16"]);
    srv.ctl_ok(&[
        "vswitch",
        "create",
        "--id",
        "vsw-c",
        "--vpc",
        "vpc-c",
        "--cidr",
        "10.9.1.0/24",
        "--gateway-mac",
        "02:00:00:00:00:09",
    ]);
    srv.ctl_ok(&["instance", "create", "--id", "i-c", "--vswitch", "vsw-c"]);
    srv.ctl_ok(&[
        "eni",
        "create",
        "--id",
        "eni-c",
        "--vswitch",
        "vsw-c",
        "--mac",
        "02:00:00:00:09:01",
        "--interface",
        "hv-c",
        "--instance",
        "i-c",
        "--primary",
    ]);
    srv.ctl_ok(&[
        "uplink",
        "create",
        "--interface",
        "hv-up",
        "--vswitch",
        "vsw-c",
    ]);
    let out = srv.ctl_ok(&["--json", "havip", "create", "--vswitch", "vsw-c"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["address"], "10.9.1.2");
    srv.ctl_ok(&["havip", "associate", &id, "--instance", "i-c"]);
    srv.ctl_ok(&["havip", "set-master", &id, "--member", "i-c"]);
    srv.ctl_ok(&[
        "eip",
        "create",
        "--id",
        "eip-c",
        "--address",
        "198.51.100.1",
    ]);
    srv.ctl_ok(&["eip", "associate", "eip-c", "--havip", &id]);
    srv.ctl_ok(&[
        "route",
        "create",
        "--vpc",
        "vpc-c",
        "--destination",
        "0.0.0.0/0",
        "--next-hop",
        &id,
        "--id",
        "rte-c",
    ]);
    let d = srv.ctl_ok(&["havip", "describe", &id]);
    assert!(d.contains("initial master  i-c"), "{d}");
    assert!(d.contains("eip-c (198.51.100.1)"), "{d}");
    for (args, needle) in [
        (&["vpc", "list"][..], "10.9.0.0/16"),
        (&["vswitch", "list"][..], "02:00:00:00:00:09"),
        (&["instance", "list"][..], "i-c"),
        (&["eni", "list"][..], "hv-c"),
        (&["uplink", "list"][..], "hv-up"),
        (&["eip", "list"][..], "198.51.100.1"),
        (&["route", "list"][..], "0.0.0.0/0"),
        (&["quota", "get"][..], "havips_per_account"),
    ] {
        let out = srv.ctl_ok(args);
        assert!(out.contains(needle), "{args:?}: {out}");
    }
    let s: State = serde_json::from_str(&srv.ctl_ok(&["state"])).unwrap();
    assert_eq!(s.havips[&id].initial_master.as_deref(), Some("i-c"));
    // Unreachable agent: a clear error, exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_havipctl"))
        .args(["--socket", "/nonexistent/api.sock", "havip", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: Unavailable: "));
}

#[test]
fn state_survives_restart() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    c.associate_havip("h", Member::instance("i-3")).unwrap();
    let before = srv.state();
    let dir = srv.stop();
    let srv = Server::start_in(dir);
    assert_eq!(srv.state(), before);
    // Slot allocation continues from the stored state.
    create_havip(&srv.client(), "g", "vsw-1");
    assert_ne!(srv.state().havips["g"].slot, before.havips["h"].slot);
}

#[test]
fn concurrent_clients_are_group_committed() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    raise_quotas(&c);
    for n in 0..8 {
        create_havip(&c, &format!("h{n}"), "vsw-1");
    }
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let c = srv.client();
            thread::spawn(move || {
                let h = format!("h{n}");
                let m = Member::instance(format!("i-{n}"));
                for _ in 0..20 {
                    c.associate_havip(&h, m.clone()).unwrap();
                    c.unassociate_havip(&h, m.clone()).unwrap();
                }
                c.associate_havip(&h, m).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = srv.state();
    for n in 0..8 {
        assert_eq!(s.havips[&format!("h{n}")].bindings, vec![format!("i-{n}")]);
    }
    // The store holds exactly what memory holds.
    let dir = srv.stop();
    let store = Store::open(dir.path().join("state.redb")).unwrap();
    assert_eq!(store.load().unwrap(), s);
}

// ---------------------------------------------------------------------------
// Crash safety

/// Deterministic op sequence for the crash test: setup, then cycles of
/// create HaVip / associate / unassociate / (every 4th) delete.
fn crash_op(i: usize) -> Op {
    let setup: Vec<Op> = {
        let mut v = vec![
            Op::CreateVpc {
                id: "vpc".into(),
                cidr: "10.0.0.0/8".parse().unwrap(),
            },
            Op::CreateVSwitch {
                id: "vsw".into(),
                vpc: "vpc".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            },
            Op::SetQuota {
                havips_per_account: Some(100_000),
                havips_per_vpc: Some(100_000),
                havip_routes_per_vpc: None,
            },
        ];
        for n in 0..10 {
            v.push(Op::CreateInstance {
                id: format!("i-{n}"),
                vswitch: "vsw".into(),
            });
        }
        v
    };
    if let Some(op) = setup.get(i) {
        return op.clone();
    }
    let k = i - setup.len();
    let (h, phase) = (k / 4, k % 4);
    let havip = format!("h{h}");
    let member = Member::instance(format!("i-{}", h % 10));
    match phase {
        0 => Op::CreateHaVip {
            id: Some(havip),
            vswitch: "vsw".into(),
            address: None,
        },
        1 => Op::AssociateHaVip { havip, member },
        2 => Op::UnassociateHaVip { havip, member },
        _ if h % 4 == 0 => Op::DeleteHaVip { id: havip },
        _ => Op::SetInitialMaster {
            havip,
            member: None,
        },
    }
}

/// State after ops `0..n` of [`crash_op`].
fn crash_state(n: usize) -> State {
    let mut s = State::default();
    for i in 0..n {
        let a = apply(&s, &crash_op(i)).expect("crash op applies");
        s.apply_change(&a.change);
    }
    s
}

/// Child side of `sigkill_during_write_burst_keeps_every_acknowledged_write`:
/// runs only when `HAVIP_CRASH_DB` is set.
#[test]
#[ignore = "child process of the crash test"]
fn crash_child() {
    let Ok(db) = std::env::var("HAVIP_CRASH_DB") else {
        return;
    };
    let start: usize = std::env::var("HAVIP_CRASH_START").unwrap().parse().unwrap();
    let cp = ControlPlane::open(&db).expect("open");
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for i in start.. {
        cp.apply(crash_op(i)).expect("op");
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

fn run_crash_child(db: &Path, start: usize, kill_after: usize) -> Option<usize> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HAVIP_CRASH_DB", db)
        .env("HAVIP_CRASH_START", start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = None;
    let mut seen = 0;
    while seen < kill_after {
        let Some(Ok(l)) = lines.next() else { break };
        if let Some(n) = l.strip_prefix("ack ") {
            last = Some(n.trim().parse::<usize>().unwrap());
            seen += 1;
        }
    }
    // SIGKILL in the middle of the burst.
    child.kill().unwrap();
    // Acks already in the pipe were acknowledged before the kill.
    for l in lines.map_while(Result::ok) {
        if let Some(n) = l.strip_prefix("ack ") {
            last = Some(n.trim().parse::<usize>().unwrap());
        }
    }
    child.wait().unwrap();
    last
}

#[test]
fn sigkill_during_write_burst_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.redb");
    let mut start = 0;
    for (round, kill_after) in [40usize, 301, 157, 523].into_iter().enumerate() {
        let acked = run_crash_child(&db, start, kill_after)
            .unwrap_or_else(|| panic!("round {round}: child acknowledged nothing"));
        assert!(acked + 1 >= start + kill_after.min(10), "round {round}");
        // Reopen (redb repairs after the crash): the state must be exactly
        // the acknowledged prefix, or that plus the one op in flight.
        let loaded = Store::open(&db).unwrap().load().unwrap();
        let acked_state = crash_state(acked + 1);
        let n = if loaded == acked_state {
            acked + 1
        } else {
            let in_flight = crash_state(acked + 2);
            assert_eq!(
                loaded, in_flight,
                "round {round}: store is neither the acknowledged state (through op {acked}) nor one op later"
            );
            acked + 2
        };
        // The reloaded state is usable: indexes agree with a fresh rebuild.
        let mut rebuilt = loaded.clone();
        rebuilt.reindex();
        assert_eq!(rebuilt, loaded);
        start = n;
    }
}

// ---------------------------------------------------------------------------
// Config

fn demo_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.toml")
}

#[test]
fn example_config_parses_and_seeds_idempotently() {
    let cfg = Config::load(demo_config_path()).expect("examples/demo.toml");
    assert_eq!(cfg.havips.len(), 1);
    assert_eq!(cfg.agent.api_socket, Path::new(havip::paths::API_SOCKET));
    assert_eq!(cfg.interfaces(), vec!["hv-a", "hv-b", "hv-c", "hv-up"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let state = {
        let cp = ControlPlane::open(&db).unwrap();
        let r = config::seed(&cp, &cfg).unwrap();
        assert!(r.created.contains(&"havip havip-demo".to_owned()), "{r:?}");
        assert!(r.kept.is_empty());
        let s = cp.snapshot();
        let h = &s.havips["havip-demo"];
        assert_eq!(h.bindings, vec!["i-a", "i-b"]);
        assert_eq!(h.initial_master.as_deref(), Some("i-a"));
        assert_eq!(s.eips["eip-demo"].havip.as_deref(), Some("havip-demo"));
        // An API change made after seeding...
        cp.apply(Op::UnassociateHaVip {
            havip: "havip-demo".into(),
            member: Member::instance("i-b"),
        })
        .unwrap();
        cp.snapshot()
    };
    // ...survives a restart with the same config; nothing is duplicated.
    let cp = ControlPlane::open(&db).unwrap();
    let r = config::seed(&cp, &cfg).unwrap();
    assert!(r.created.is_empty(), "{r:?}");
    assert_eq!(r.kept.len(), 12, "{r:?}");
    assert_eq!(cp.snapshot(), state);
    assert_eq!(cp.snapshot().havips["havip-demo"].bindings, vec!["i-a"]);
}

const GOOD: &str = r#"
[[vpc]]
id = "vpc-1"
cidr = "10.0.0.0/16"
[[vswitch]]
id = "vsw-1"
vpc = "vpc-1"
cidr = "10.0.1.0/24"
gateway_mac = "02:00:00:00:00:01"
[[instance]]
id = "i-a"
vswitch = "vsw-1"
[[instance]]
id = "i-b"
vswitch = "vsw-1"
[[eni]]
id = "eni-a"
instance = "i-a"
vswitch = "vsw-1"
mac = "02:00:00:00:0a:01"
interface = "hv-a"
primary = true
"#;

/// Parses and plans `GOOD` + `extra` on an empty state.
fn check(extra: &str) -> Result<(), ConfigError> {
    let cfg = Config::from_toml_str(&format!("{GOOD}{extra}"))?;
    config::plan_seed(&cfg, &State::default()).map(drop)
}

fn bad(extra: &str, needles: &[&str]) {
    let e = check(extra).expect_err(extra);
    let msg = e.to_string();
    for n in needles {
        assert!(
            msg.contains(n),
            "error for {extra:?} should mention {n:?}: {msg}"
        );
    }
}

#[test]
fn config_errors_name_the_offending_key_and_value() {
    check("").expect("the base config is good");
    check("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ninstances = [\"i-a\"]\nmaster = \"i-a\"\n")
        .expect("a good HaVip");
    bad("[agent]\nbogus = 1\n", &["unknown field", "bogus"]);
    bad(
        "[[vpc]]\nid = \"v\"\ncidr = \"10.0.0.0/16\"\ncolour = \"red\"\n",
        &["colour"],
    );
    bad("[agent]\nxdp_mode = \"turbo\"\n", &["xdp_mode", "turbo"]);
    bad(
        "[[eni]]\nid = \"e\"\nvswitch = \"vsw-1\"\nmac = \"02:00:00:00:0a\"\ninterface = \"x\"\n",
        &["mac", "02:00:00:00:0a", "invalid MAC"],
    );
    bad(
        "[[vpc]]\nid = \"v2\"\ncidr = \"10.0.0.1/16\"\n",
        &["cidr", "10.0.0.1/16", "host bits"],
    );
    bad(
        "[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\naddress = \"10.0.1\"\n",
        &["address", "10.0.1"],
    );
    bad(
        "[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\n[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\n",
        &["duplicate havip id \"h\""],
    );
    bad(
        "[[havip]]\nid = \"h1\"\nvswitch = \"vsw-1\"\naddress = \"10.0.1.9\"\n[[havip]]\nid = \"h2\"\nvswitch = \"vsw-1\"\naddress = \"10.0.1.9\"\n",
        &["[[havip]] \"h2\"", "Conflict.AddressInUse", "10.0.1.9"],
    );
    bad(
        "[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\naddress = \"10.0.2.9\"\n",
        &[
            "[[havip]] \"h\"",
            "InvalidParameter.AddressOutsideVSwitch",
            "10.0.2.9",
            "10.0.1.0/24",
        ],
    );
    bad(
        "[[havip]]\nid = \"h\"\nvswitch = \"vsw-9\"\n",
        &["[[havip]] \"h\"", "NotFound.VSwitch", "vsw-9"],
    );
    bad(
        "[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ninstances = [\"i-z\"]\n",
        &["[[havip]] \"h\" instance \"i-z\"", "NotFound.Instance"],
    );
    bad(
        "[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ninstances = [\"i-a\"]\nenis = [\"eni-a\"]\n",
        &["Conflict.MixedBindingKinds"],
    );
    bad(
        "[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ninstances = [\"i-a\"]\nmaster = \"i-b\"\n",
        &["master", "InvalidParameter.MasterNotBound", "i-b"],
    );
    bad(
        "[[instance]]\nid = \"i-c\"\nvswitch = \"vsw-7\"\n",
        &["[[instance]] \"i-c\"", "NotFound.VSwitch", "vsw-7"],
    );
    bad(
        "[[eni]]\nid = \"eni-b\"\nvswitch = \"vsw-1\"\nmac = \"02:00:00:00:0a:01\"\ninterface = \"hv-b\"\n",
        &["[[eni]] \"eni-b\"", "Conflict.MacInUse"],
    );
    // Six HaVips break the default per-VPC quota, like the API.
    let six: String = (0..6)
        .map(|n| format!("[[havip]]\nid = \"h{n}\"\nvswitch = \"vsw-1\"\n"))
        .collect();
    bad(&six, &["[[havip]] \"h5\"", "QuotaExceeded.HaVipsPerVpc"]);
    check(&format!(
        "{six}[quotas]\nhavips_per_vpc = 6\nhavips_per_account = 6\n"
    ))
    .expect("quotas raised in the config");
    bad("[quotas]\nhavips_per_galaxy = 3\n", &["havips_per_galaxy"]);
}

#[test]
fn config_mismatch_with_store_is_reported() {
    let cfg = Config::from_toml_str(GOOD).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::open(dir.path().join("s.redb")).unwrap();
    config::seed(&cp, &cfg).unwrap();
    let changed = Config::from_toml_str(&GOOD.replace("10.0.1.0/24", "10.0.2.0/24")).unwrap();
    let before = cp.snapshot();
    let e = config::seed(&cp, &changed).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("[[vswitch]] \"vsw-1\"")
            && msg.contains("cidr")
            && msg.contains("10.0.2.0/24"),
        "{msg}"
    );
    assert_eq!(cp.snapshot(), before, "a failed seed changes nothing");
}

#[test]
fn bad_config_file_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[[vpc]]\nid = \"v\"\ncidr = \"10.0.0.0/99\"\n").unwrap();
    let msg = Config::load(&p).unwrap_err().to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("10.0.0.0/99"),
        "{msg}"
    );
    let msg = Config::load(dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing.toml"), "{msg}");
}

// ---------------------------------------------------------------------------
// Desired data-plane content

fn demo_state() -> State {
    let cfg = Config::load(demo_config_path()).unwrap();
    let (applied, _) = config::plan_seed(&cfg, &State::default()).unwrap();
    let mut s = State::default();
    for a in applied {
        s.apply_change(&a.change);
    }
    s
}

fn ifindex(name: &str) -> Option<u32> {
    match name {
        "hv-a" => Some(11),
        "hv-b" => Some(12),
        "hv-c" => Some(13),
        "hv-up" => Some(20),
        _ => None,
    }
}

#[test]
fn desired_from_demo_state() {
    let s = demo_state();
    let cfg = DataplaneConfig {
        hold_ns: 5,
        security_events_per_sec: 64,
        flags: 0,
    };
    let d = desired(&s, &ifindex, cfg).unwrap();
    let vsw = s.vswitches["vsw-demo"].dp_id;
    assert_eq!(d.config, cfg);
    let ports: Vec<(u32, u32, u32)> = d
        .ports
        .iter()
        .map(|p| (p.ifindex, p.vswitch_id, p.flags))
        .collect();
    assert_eq!(
        ports,
        vec![
            (11, vsw, port_flags::INSTANCE),
            (12, vsw, port_flags::INSTANCE),
            (13, vsw, port_flags::INSTANCE),
            (20, vsw, port_flags::UPLINK),
        ]
    );
    assert!(d.ports.iter().all(|p| p.gateway_mac == [2, 0, 0, 0, 0, 1]));
    // One VPC: its data-plane id is its (only) vSwitch's.
    assert!(d.ports.iter().all(|p| p.vpc_id == vsw));
    assert!(d.havips.iter().all(|h| h.vpc_id == vsw));
    assert_eq!(d.havips.len(), 1);
    let h = &d.havips[0];
    assert_eq!(
        h.key,
        HavipKey {
            vswitch_id: vsw,
            addr: [10, 0, 1, 100]
        }
    );
    assert_eq!(h.id, s.havips["havip-demo"].slot);
    assert_eq!(h.virtual_mac, virtual_mac([10, 0, 1, 100]));
    let b: Vec<(u32, [u8; 6])> = h.bindings.iter().map(|b| (b.ifindex, b.mac)).collect();
    assert_eq!(
        b,
        vec![(11, [2, 0, 0, 0, 0x0a, 1]), (12, [2, 0, 0, 0, 0x0b, 1])]
    );
    assert_eq!(h.initial_owner, Some(h.bindings[0]));
}

#[test]
fn desired_instance_bindings_use_enis_in_the_havip_vswitch_primary_first() {
    let mut s = demo_state();
    // A secondary ENI of i-b in the same vSwitch, one in another vSwitch.
    let ops = [
        Op::CreateVSwitch {
            id: "vsw-other".into(),
            vpc: "vpc-demo".into(),
            cidr: "10.0.2.0/24".parse().unwrap(),
            gateway_mac: "02:00:00:00:00:02".parse().unwrap(),
        },
        Op::CreateEni {
            id: "eni-b0".into(),
            vswitch: "vsw-demo".into(),
            mac: "02:00:00:00:0b:02".parse().unwrap(),
            host_interface: "hv-b2".into(),
            instance: Some("i-b".into()),
            primary: false,
        },
        Op::CreateEni {
            id: "eni-b9".into(),
            vswitch: "vsw-other".into(),
            mac: "02:00:00:00:0b:09".parse().unwrap(),
            host_interface: "hv-b9".into(),
            instance: Some("i-b".into()),
            primary: false,
        },
        Op::SetInitialMaster {
            havip: "havip-demo".into(),
            member: Some("i-b".into()),
        },
    ];
    for op in &ops {
        let a = apply(&s, op).unwrap();
        s.apply_change(&a.change);
    }
    let resolve = |n: &str| {
        ifindex(n).or(match n {
            "hv-b2" => Some(14),
            "hv-b9" => Some(15),
            _ => None,
        })
    };
    let d = desired(&s, &resolve, DataplaneConfig::default()).unwrap();
    let b: Vec<u32> = d.havips[0].bindings.iter().map(|b| b.ifindex).collect();
    // i-a's primary, then i-b's primary (eni-b) before its secondary (eni-b0);
    // eni-b9 is in another vSwitch.
    assert_eq!(b, vec![11, 12, 14]);
    assert_eq!(d.havips[0].initial_owner.map(|o| o.ifindex), Some(12));
    // The VPC id does not change when a vSwitch is added to the VPC.
    let vpc = s.vswitches["vsw-demo"].dp_id;
    assert!(d.ports.iter().all(|p| p.vpc_id == vpc));
}

#[test]
fn desired_missing_interface_is_an_error_or_a_warning() {
    let s = demo_state();
    let partial = |n: &str| if n == "hv-b" { None } else { ifindex(n) };
    match desired(&s, &partial, DataplaneConfig::default()) {
        Err(DesiredError::MissingInterface(m)) => {
            assert_eq!(m.interface, "hv-b");
            assert!(m.to_string().contains("ENI \"eni-b\""), "{m}");
        }
        other => panic!("expected a missing interface, got {other:?}"),
    }
    let (d, missing) = desired_lenient(&s, &partial, DataplaneConfig::default()).unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(d.ports.len(), 3);
    assert_eq!(d.havips[0].bindings.len(), 1);
}

// ---------------------------------------------------------------------------
// Performance smoke (the real numbers come from `cargo xtask bench`)

#[test]
fn associate_throughput_and_cold_start_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perf.redb");
    let n_havips = 2_000;
    {
        let cp = ControlPlane::open(&db).unwrap();
        let mut ops = vec![
            Op::CreateVpc {
                id: "vpc".into(),
                cidr: "10.0.0.0/8".parse().unwrap(),
            },
            Op::CreateVSwitch {
                id: "vsw".into(),
                vpc: "vpc".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            },
            Op::CreateInstance {
                id: "i-0".into(),
                vswitch: "vsw".into(),
            },
            Op::SetQuota {
                havips_per_account: Some(n_havips),
                havips_per_vpc: Some(n_havips),
                havip_routes_per_vpc: None,
            },
        ];
        ops.extend((0..n_havips).map(|n| Op::CreateHaVip {
            id: Some(format!("h{n}")),
            vswitch: "vsw".into(),
            address: None,
        }));
        cp.apply_all(&ops).unwrap();
        let rounds: u32 = 200;
        let t = Instant::now();
        for r in 0..rounds {
            let havip = format!("h{}", r as usize % n_havips);
            let member = Member::instance("i-0");
            cp.apply(Op::AssociateHaVip {
                havip: havip.clone(),
                member: member.clone(),
            })
            .unwrap();
            cp.apply(Op::UnassociateHaVip { havip, member }).unwrap();
        }
        let ops_s = f64::from(2 * rounds) / t.elapsed().as_secs_f64();
        eprintln!("associate/unassociate (debug build, one caller): {ops_s:.0} ops/s");
        assert!(ops_s > 100.0, "{ops_s} ops/s");
    }
    let t = Instant::now();
    let cp = ControlPlane::open(&db).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(cp.with_state(|s| s.havips.len()), n_havips);
    eprintln!("cold start with {n_havips} HaVips (debug build): {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// `cargo test --release -p havip-userspace --test control_plane -- --ignored --nocapture perf_numbers`
#[test]
#[ignore = "performance numbers; run in release"]
fn perf_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perf.redb");
    let n_havips = 10_000;
    {
        let cp = ControlPlane::open(&db).unwrap();
        let mut ops = vec![
            Op::CreateVpc {
                id: "vpc".into(),
                cidr: "10.0.0.0/8".parse().unwrap(),
            },
            Op::CreateVSwitch {
                id: "vsw".into(),
                vpc: "vpc".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            },
            Op::CreateInstance {
                id: "i-0".into(),
                vswitch: "vsw".into(),
            },
            Op::SetQuota {
                havips_per_account: Some(n_havips),
                havips_per_vpc: Some(n_havips),
                havip_routes_per_vpc: None,
            },
        ];
        ops.extend((0..n_havips).map(|n| Op::CreateHaVip {
            id: Some(format!("h{n}")),
            vswitch: "vsw".into(),
            address: None,
        }));
        let t = Instant::now();
        cp.apply_all(&ops).unwrap();
        eprintln!("seed {n_havips} HaVips in one txn: {:?}", t.elapsed());
        let rounds: u32 = 5_000;
        let t = Instant::now();
        for r in 0..rounds {
            let havip = format!("h{}", r as usize % n_havips);
            let member = Member::instance("i-0");
            cp.apply(Op::AssociateHaVip {
                havip: havip.clone(),
                member: member.clone(),
            })
            .unwrap();
            cp.apply(Op::UnassociateHaVip { havip, member }).unwrap();
        }
        let ops_s = f64::from(2 * rounds) / t.elapsed().as_secs_f64();
        eprintln!("associate/unassociate, one caller: {ops_s:.0} ops/s");
        let cp = Arc::new(cp);
        let t = Instant::now();
        let threads: Vec<_> = (0..16)
            .map(|k| {
                let cp = Arc::clone(&cp);
                thread::spawn(move || {
                    for r in 0..(rounds / 16) {
                        let havip = format!("h{}", (r as usize * 16 + k) % n_havips);
                        let member = Member::instance("i-0");
                        cp.apply(Op::AssociateHaVip {
                            havip: havip.clone(),
                            member: member.clone(),
                        })
                        .unwrap();
                        cp.apply(Op::UnassociateHaVip { havip, member }).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let ops_s = f64::from(2 * (rounds / 16) * 16) / t.elapsed().as_secs_f64();
        eprintln!("associate/unassociate, 16 callers: {ops_s:.0} ops/s");
    }
    let t = Instant::now();
    let cp = ControlPlane::open(&db).unwrap();
    eprintln!("cold start with {n_havips} HaVips: {:?}", t.elapsed());
    assert_eq!(cp.with_state(|s| s.havips.len()), n_havips);
}
