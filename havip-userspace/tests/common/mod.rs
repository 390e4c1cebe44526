//! Shared set-up of the control-plane tests: the API served in-process on a
//! temporary unix socket, the real `havipctl`, the fixture topology, and
//! [`Ops`] (the resource-named calls the tests read best, each one
//! `Client::apply` of the operation's struct).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{mpsc, Arc},
    thread,
};

use havip::{
    api::{self, Client, ClientError, Deleted},
    control::{ControlPlane, HaVipView},
    model::*,
};
use tokio::sync::Notify;

/// Resource-named operations over [`Client::apply`] (tests only).
pub trait Ops {
    fn create_vpc(&self, op: &CreateVpc) -> Result<Vpc, ClientError>;
    fn create_vswitch(&self, op: &CreateVSwitch) -> Result<VSwitch, ClientError>;
    fn create_instance(&self, op: &CreateInstance) -> Result<Instance, ClientError>;
    fn create_eni(&self, op: &CreateEni) -> Result<Eni, ClientError>;
    fn create_havip(&self, op: &CreateHaVip) -> Result<HaVipView, ClientError>;
    fn delete_havip(&self, id: &str) -> Result<Deleted, ClientError>;
    fn associate_havip(&self, id: &str, member: Member) -> Result<HaVipView, ClientError>;
    fn unassociate_havip(&self, id: &str, member: Member) -> Result<HaVipView, ClientError>;
    fn set_master(&self, id: &str, member: Option<&str>) -> Result<HaVipView, ClientError>;
    fn set_quotas(&self, op: &SetQuota) -> Result<Quotas, ClientError>;
    fn create_eip(&self, op: &CreateEip) -> Result<Eip, ClientError>;
    fn delete_eip(&self, id: &str) -> Result<Deleted, ClientError>;
    fn associate_eip(&self, id: &str, havip: &str) -> Result<Eip, ClientError>;
    fn unassociate_eip(&self, id: &str) -> Result<Eip, ClientError>;
    fn create_route(&self, op: &CreateRoute) -> Result<RouteEntry, ClientError>;
    fn delete_route(&self, id: &str) -> Result<Deleted, ClientError>;
}

impl Ops for Client {
    fn create_vpc(&self, op: &CreateVpc) -> Result<Vpc, ClientError> {
        self.apply(op.clone())
    }
    fn create_vswitch(&self, op: &CreateVSwitch) -> Result<VSwitch, ClientError> {
        self.apply(op.clone())
    }
    fn create_instance(&self, op: &CreateInstance) -> Result<Instance, ClientError> {
        self.apply(op.clone())
    }
    fn create_eni(&self, op: &CreateEni) -> Result<Eni, ClientError> {
        self.apply(op.clone())
    }
    fn create_havip(&self, op: &CreateHaVip) -> Result<HaVipView, ClientError> {
        self.apply(op.clone())
    }
    fn delete_havip(&self, id: &str) -> Result<Deleted, ClientError> {
        self.apply(DeleteHaVip { id: id.into() })
    }
    fn associate_havip(&self, id: &str, member: Member) -> Result<HaVipView, ClientError> {
        self.apply(associate(id, member))
    }
    fn unassociate_havip(&self, id: &str, member: Member) -> Result<HaVipView, ClientError> {
        self.apply(unassociate(id, member))
    }
    fn set_master(&self, id: &str, member: Option<&str>) -> Result<HaVipView, ClientError> {
        self.apply(set_master(id, member))
    }
    fn set_quotas(&self, op: &SetQuota) -> Result<Quotas, ClientError> {
        self.apply(*op)
    }
    fn create_eip(&self, op: &CreateEip) -> Result<Eip, ClientError> {
        self.apply(op.clone())
    }
    fn delete_eip(&self, id: &str) -> Result<Deleted, ClientError> {
        self.apply(DeleteEip { id: id.into() })
    }
    fn associate_eip(&self, id: &str, havip: &str) -> Result<Eip, ClientError> {
        self.apply(associate_eip(id, havip))
    }
    fn unassociate_eip(&self, id: &str) -> Result<Eip, ClientError> {
        self.apply(UnassociateEip { eip: id.into() })
    }
    fn create_route(&self, op: &CreateRoute) -> Result<RouteEntry, ClientError> {
        self.apply(op.clone())
    }
    fn delete_route(&self, id: &str) -> Result<Deleted, ClientError> {
        self.apply(DeleteRoute { id: id.into() })
    }
}

// Operation builders, shared by [`Ops`] and the refusal tables.

/// AssociateHaVip `havip` with `member`.
pub fn associate(havip: &str, member: Member) -> Op {
    Op::AssociateHaVip(AssociateHaVip {
        havip: havip.into(),
        member,
    })
}

/// UnassociateHaVip `member` from `havip`, without force.
pub fn unassociate(havip: &str, member: Member) -> Op {
    Op::UnassociateHaVip(UnassociateHaVip {
        havip: havip.into(),
        member,
        force: false,
    })
}

/// SetInitialOwner of `havip` to `member` (or none).
pub fn set_master(havip: &str, member: Option<&str>) -> Op {
    Op::SetInitialOwner(SetInitialOwner {
        havip: havip.into(),
        member: member.map(str::to_owned),
    })
}

/// AssociateEip `eip` with `havip`.
pub fn associate_eip(eip: &str, havip: &str) -> Op {
    Op::AssociateEip(AssociateEip {
        eip: eip.into(),
        havip: havip.into(),
    })
}

/// CreateHaVip in `vswitch`, id and address allocated.
pub fn havip_in(vswitch: &str) -> CreateHaVip {
    CreateHaVip {
        id: None,
        vswitch: vswitch.into(),
        address: None,
        ..Default::default()
    }
}

/// CreateRoute (id allocated) in `vpc` to `destination` via `next_hop`.
pub fn route(vpc: &str, destination: &str, next_hop: &str) -> CreateRoute {
    CreateRoute {
        id: None,
        vpc: vpc.into(),
        destination: destination.parse().unwrap(),
        next_hop_havip: next_hop.into(),
    }
}

// ---------------------------------------------------------------------------

/// The API served in-process on a temporary unix socket.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    cp: Option<Arc<ControlPlane>>,
    stop: Arc<Notify>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir)
    }

    pub fn start_in(dir: tempfile::TempDir) -> Self {
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

    pub fn client(&self) -> Client {
        Client::unix(&self.socket)
    }

    /// A started server with the [`fixture`] resources, and a client.
    pub fn with_fixture() -> (Self, Client) {
        let srv = Self::start();
        let c = srv.client();
        fixture(&c);
        (srv, c)
    }

    /// [`Server::with_fixture`] with quotas of 100 HaVips per account and
    /// per VPC.
    pub fn with_raised_quotas() -> (Self, Client) {
        let (srv, c) = Self::with_fixture();
        c.set_quotas(&SetQuota {
            havips_per_account: Some(100),
            havips_per_vpc: Some(100),
            havip_routes_per_vpc: None,
        })
        .unwrap();
        (srv, c)
    }

    pub fn cp(&self) -> &ControlPlane {
        self.cp.as_ref().expect("control plane")
    }

    pub fn state(&self) -> State {
        self.client().state().expect("GET /v1/state")
    }

    /// Stops the server and closes the store; returns the directory.
    pub fn stop(mut self) -> tempfile::TempDir {
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
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_havipctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run havipctl")
    }

    /// `havipctl` must succeed; returns its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
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

pub fn code_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Api { code, message, .. }) => {
            assert!(!message.is_empty(), "empty message for {code}");
            code
        }
        other => panic!("expected an API refusal, got {other:?}"),
    }
}

/// `op` is refused with `code` and changes nothing; then the same through
/// `havipctl` with the whitespace-separated arguments `cli`.
pub fn refused(srv: &Server, code: &str, op: impl Into<Op>, cli: &str) {
    let before = srv.state();
    let api = srv.client().apply::<serde_json::Value>(op);
    assert_eq!(code_of(api), code, "API");
    assert_eq!(srv.state(), before, "API refusal {code} changed the state");

    let cli_args: Vec<&str> = cli.split_whitespace().collect();
    let out = srv.ctl(&cli_args);
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

/// [`refused`] for each row (expected code, operation, `havipctl` arguments).
pub fn refusals(srv: &Server, rows: &[(&str, Op, impl AsRef<str>)]) {
    for (code, op, cli) in rows {
        refused(srv, code, op.clone(), cli.as_ref());
    }
}

/// CreateVSwitch `id` in `vpc` with `cidr` and gateway MAC `mac`, no VNI.
pub fn vswitch_op(id: &str, vpc: &str, cidr: &str, mac: &str) -> CreateVSwitch {
    CreateVSwitch {
        vni: None,
        id: id.into(),
        vpc: vpc.into(),
        cidr: cidr.parse().unwrap(),
        gateway_mac: mac.parse().unwrap(),
    }
}

/// CreateEni `id` in `vswitch` with `mac` on `interface`, attached to
/// `instance` (none: detached), on the API's own host.
pub fn eni_op(
    id: &str,
    vswitch: &str,
    mac: &str,
    interface: &str,
    instance: Option<&str>,
    primary: bool,
) -> CreateEni {
    CreateEni {
        host: None,
        id: id.into(),
        vswitch: vswitch.into(),
        mac: mac.parse().unwrap(),
        interface: interface.into(),
        instance: instance.map(str::to_owned),
        primary,
    }
}

/// VPC `vpc-1` (10.0.0.0/16) with `vsw-1` (10.0.1.0/24) and `vsw-2`
/// (10.0.2.0/24); instances `i-0..i-11` in vsw-1, each with primary ENI
/// `eni-N` on `hv-N`; instance `i-x` in vsw-2 with `eni-x`; secondary ENI
/// `eni-0b` of `i-0` in vsw-1.
pub fn fixture(c: &Client) {
    c.create_vpc(&CreateVpc {
        id: "vpc-1".into(),
        cidr: "10.0.0.0/16".parse().unwrap(),
    })
    .unwrap();
    for (n, id) in ["vsw-1", "vsw-2"].iter().enumerate() {
        c.create_vswitch(&vswitch_op(
            id,
            "vpc-1",
            &format!("10.0.{}.0/24", n + 1),
            "02:00:00:00:00:01",
        ))
        .unwrap();
    }
    let inst = |id: &str, vsw: &str, eni: &str, mac: &str, ifname: &str| {
        c.create_instance(&CreateInstance {
            id: id.into(),
            vswitch: vsw.into(),
        })
        .unwrap();
        c.create_eni(&eni_op(eni, vsw, mac, ifname, Some(id), true))
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
    c.create_eni(&eni_op(
        "eni-0b",
        "vsw-1",
        "02:00:00:00:01:b0",
        "hv-0b",
        Some("i-0"),
        false,
    ))
    .unwrap();
}

pub fn create_havip(c: &Client, id: &str, vswitch: &str) {
    c.create_havip(&CreateHaVip {
        id: Some(id.into()),
        ..havip_in(vswitch)
    })
    .unwrap();
}

/// VPC `vpc` (10.0.0.0/8) with vSwitch `vsw` (10.0.0.0/16), quotas of
/// `quota` HaVips per account and per VPC, and instances `i-0..` in `vsw`:
/// the seed of the durability and performance tests.
pub fn seed_ops(n_instances: usize, quota: usize) -> Vec<Op> {
    let mut ops = vec![
        Op::CreateVpc(CreateVpc {
            id: "vpc".into(),
            cidr: "10.0.0.0/8".parse().unwrap(),
        }),
        Op::CreateVSwitch(vswitch_op("vsw", "vpc", "10.0.0.0/16", "02:00:00:00:00:01")),
        Op::SetQuota(SetQuota {
            havips_per_account: Some(quota),
            havips_per_vpc: Some(quota),
            havip_routes_per_vpc: None,
        }),
    ];
    ops.extend((0..n_instances).map(|n| {
        Op::CreateInstance(CreateInstance {
            id: format!("i-{n}"),
            vswitch: "vsw".into(),
        })
    }));
    ops
}

/// HaVip `id` in [`seed_ops`]'s vSwitch, address allocated.
pub fn havip_op(id: &str) -> Op {
    Op::CreateHaVip(CreateHaVip {
        id: Some(id.into()),
        ..havip_in("vsw")
    })
}

/// HaVips `h0..h{n}` in [`seed_ops`]'s vSwitch, addresses allocated.
pub fn havip_ops(n: usize) -> impl Iterator<Item = Op> {
    (0..n).map(|n| havip_op(&format!("h{n}")))
}

/// The example config shipped in `examples/`.
pub fn demo_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.toml")
}
