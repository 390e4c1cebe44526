//! Machine set-up: Debian packages, bpf-linker built against Debian's LLVM 22, bpffs.
//!
//! Recipe and the reasons for it: docs/toolchain.md. Every part checks first and only acts
//! when something is missing, so a set-up machine costs a few milliseconds.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::util::{self, step};

/// Debian packages: the eBPF toolchain, then what tests and the demo use.
pub const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "clang-19",
    "libbpf-dev",
    "bpftool",
    "ethtool",
    "iproute2",
    "keepalived",
    "tcpdump",
    "socat",
    "iputils-ping",
    "netcat-openbsd",
    // Multi-host tests start their own etcd (3.4) per test and inspect it
    // with etcdctl; the store's etcd-client crate needs protoc in its build
    // script.
    "etcd-server",
    "etcd-client",
    "protobuf-compiler",
    // promtool (`promtool check metrics`) checks the agent's /metrics in the
    // tests; the package also brings a Prometheus server: kept from starting
    // by policy-rc.d during the install, then disabled (and stopped if a
    // policy of the machine let it start) as etcd's is.
    "prometheus",
    // The benchmark's plots draw their labels with DejaVu Sans.
    "fonts-dejavu-core",
    // The EIP benchmark's peer: nftables DNAT/SNAT with conntrack.
    "nftables",
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";
const DEFAULT_TOOLS_DIR: &str = "/opt/havip/tools";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Where rust-web-src puts the library source; build-std looks exactly here.
const RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library/core";
const BPFFS: &str = "/sys/fs/bpf";
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// `$HAVIP_TOOLS_DIR` or /opt/havip/tools; bpf-linker lives in `<dir>/bin`.
pub fn tools_dir() -> PathBuf {
    match env::var_os("HAVIP_TOOLS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_TOOLS_DIR),
    }
}

pub fn tools_bin() -> PathBuf {
    tools_dir().join("bin")
}

/// `cargo xtask setup` (also the first step of build/test/build-and-run/bench).
pub fn setup() -> Result<()> {
    let s = step("checking machine set-up");
    let notes = [
        apt_packages()?,
        packaged_services_off()?,
        rust_src()?,
        bpf_linker()?,
        bpffs()?,
    ];
    s.done_with(notes.join("; "));
    Ok(())
}

/// Packages from [`APT_PACKAGES`] that are not installed.
fn missing_packages() -> Result<Vec<&'static str>> {
    // One dpkg-query for all: unknown packages go to stderr (and exit 1) and are
    // simply absent from stdout.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(APT_PACKAGES)
        .output()
        .context("cannot run dpkg-query: is this a Debian machine?")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with(" install ok installed"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name))
        .collect();
    Ok(APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

fn apt_packages() -> Result<String> {
    let missing = missing_packages()?;
    if missing.is_empty() {
        return Ok(format!("{} apt packages present", APT_PACKAGES.len()));
    }
    util::require_root(&format!("installing {}", missing.join(" ")))?;
    let s = step(format!(
        "installing {} apt package(s): {}",
        missing.len(),
        missing.join(" ")
    ));
    // Keep package scripts from starting services (keepalived) outside systemd, as
    // Docker images do; only if the machine has no policy of its own.
    let policy = Path::new(POLICY_RC_D);
    let own_policy = !policy.exists();
    if own_policy {
        write_policy_rc_d(policy)?;
    }
    let result = (|| {
        util::run(
            Command::new("apt-get")
                .args(["-q", "update"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        util::run(
            Command::new("apt-get")
                .args(["-q", "install", "-y"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    })();
    if own_policy {
        let _ = fs::remove_file(policy);
    }
    result?;
    let still = missing_packages()?;
    if !still.is_empty() {
        bail!(
            "apt-get finished but these packages are still missing: {}",
            still.join(" ")
        );
    }
    s.done();
    Ok(format!("installed {}", missing.join(" ")))
}

/// A service a Debian package enables on install that havip's tests do not
/// want: the tests start their own etcd per test on unique ports, and need
/// only `promtool` from the prometheus package, not a Prometheus server
/// scraping on :9090. The install runs under a policy-rc.d (nothing starts
/// then), but the package still enables the unit for the next boot, and a
/// machine with a policy of its own may have started it.
struct PackagedService {
    /// Unit and SysV script name.
    name: &'static str,
    /// Links a systemd `enable` leaves (the unit's `WantedBy=` and `Alias=`).
    unit_links: &'static [&'static str],
    /// `comm` of its process; the service never runs as root, the tests'
    /// own processes (etcd) do, so they never match.
    comm: &'static str,
}

const PACKAGED_SERVICES: &[PackagedService] = &[
    PackagedService {
        name: "etcd",
        unit_links: &[
            "/etc/systemd/system/multi-user.target.wants/etcd.service",
            "/etc/systemd/system/etcd2.service",
        ],
        comm: "etcd",
    },
    PackagedService {
        name: "prometheus",
        unit_links: &["/etc/systemd/system/multi-user.target.wants/prometheus.service"],
        comm: "prometheus",
    },
];

/// Disables (and stops, if running) every [`PACKAGED_SERVICES`] entry. A
/// few path checks when already done.
fn packaged_services_off() -> Result<String> {
    let mut notes = Vec::new();
    for svc in PACKAGED_SERVICES {
        notes.push(service_off(svc)?);
    }
    Ok(notes.join(", "))
}

impl PackagedService {
    /// A SysV start link (`/etc/rc2.d/S01etcd`) left by `update-rc.d <name> defaults`.
    fn rc_enabled(&self) -> bool {
        fs::read_dir("/etc/rc2.d").is_ok_and(|d| {
            d.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with('S')
                    && name.trim_start_matches(|c: char| c == 'S' || c.is_ascii_digit())
                        == self.name
            })
        })
    }

    /// A process of the service (by `comm`, not running as root).
    fn running(&self) -> bool {
        let Ok(entries) = fs::read_dir("/proc") else {
            return false;
        };
        entries.flatten().any(|e| {
            let dir = e.path();
            let is_it = fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == self.comm);
            is_it
                && fs::read_to_string(dir.join("status")).is_ok_and(|st| {
                    // "Uid: <real> <effective> ...": the service never runs as root.
                    st.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .is_some_and(|uid| uid != "0")
                })
        })
    }
}

fn service_off(svc: &PackagedService) -> Result<String> {
    let name = svc.name;
    let unit_links: Vec<&str> = svc
        .unit_links
        .iter()
        .copied()
        .filter(|l| Path::new(l).symlink_metadata().is_ok())
        .collect();
    let rc_enabled = svc.rc_enabled();
    let running = svc.running();
    if unit_links.is_empty() && !rc_enabled && !running {
        return Ok(format!("{name} service disabled"));
    }
    util::require_root(&format!("disabling the packaged {name} service"))?;
    let s = step(format!(
        "disabling the packaged {name} service (the tests do not use it)"
    ));
    if Path::new("/run/systemd/system").is_dir() {
        let _ = util::run(Command::new("systemctl").args([
            "disable",
            "--now",
            &format!("{name}.service"),
        ]));
    } else if running {
        let _ = util::run(Command::new("service").args([name, "stop"]));
    }
    if rc_enabled {
        let _ = util::run(Command::new("update-rc.d").args([name, "disable"]));
    }
    // Without systemd (containers) nobody else removes the unit links.
    for link in unit_links {
        if Path::new(link).symlink_metadata().is_ok() {
            fs::remove_file(link).with_context(|| format!("cannot remove {link}"))?;
        }
    }
    if svc.running() {
        bail!("the packaged {name} service is still running; stop it (service {name} stop)");
    }
    s.done();
    Ok(format!("disabled the packaged {name} service"))
}

fn write_policy_rc_d(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(
        path,
        "#!/bin/sh\n# temporary, written by cargo xtask setup\nexit 101\n",
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn rust_src() -> Result<String> {
    if !Path::new(RUST_SRC).is_dir() {
        bail!(
            "{RUST_SRC} is missing although rust-web-src is installed; \
             try `apt-get install --reinstall rust-web-src`"
        );
    }
    let version = util::output(Command::new("/usr/bin/rustc").arg("--version")).unwrap_or_default();
    Ok(format!(
        "eBPF rustc: {}",
        version
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

/// The version bpf-linker in `bin` reports (`bpf-linker 0.13.0` -> `0.13.0`).
fn bpf_linker_version(bin: &Path) -> Option<String> {
    let out = util::output(Command::new(bin.join("bpf-linker")).arg("--version"))?;
    out.split_whitespace().nth(1).map(str::to_string)
}

fn bpf_linker() -> Result<String> {
    let dir = tools_dir();
    let bin = dir.join("bin");
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION}");
    match bpf_linker_version(&bin) {
        Some(v) if v == BPF_LINKER_VERSION => {
            return Ok(format!("{wanted} at {}", bin.display()));
        }
        Some(v) => println!(
            "    {}/bpf-linker is version {v}, want {BPF_LINKER_VERSION}",
            bin.display()
        ),
        None => {}
    }
    let s = step(format!(
        "installing {wanted} (LLVM 22) into {} (1-5 min)",
        dir.display()
    ));
    fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create {} (run as root or set HAVIP_TOOLS_DIR)",
            dir.display()
        )
    })?;
    let mut cmd = util::debian_cargo(&bin);
    cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--locked", "--no-default-features", "--features", "llvm-22"])
        .arg("--root")
        .arg(&dir)
        .env("LLVM_PREFIX", LLVM_PREFIX);
    util::run(&mut cmd)?;
    match bpf_linker_version(&bin) {
        Some(v) if v == BPF_LINKER_VERSION => {}
        other => bail!(
            "bpf-linker installed into {} but reports {other:?}",
            bin.display()
        ),
    }
    s.done();
    Ok(format!("installed {wanted} at {}", bin.display()))
}

fn bpffs_mounted() -> bool {
    fs::read_to_string("/proc/self/mounts")
        .map(|mounts| {
            mounts.lines().any(|l| {
                let mut f = l.split_whitespace();
                let (_, at, fstype) = (f.next(), f.next(), f.next());
                at == Some(BPFFS) && fstype == Some("bpf")
            })
        })
        .unwrap_or(false)
}

fn bpffs() -> Result<String> {
    if bpffs_mounted() {
        return Ok(format!("bpffs at {BPFFS}"));
    }
    if !util::is_root() {
        // Building needs no bpffs; running does, and will say so.
        println!("    warning: bpffs is not mounted at {BPFFS} and mounting needs root");
        return Ok(format!("bpffs NOT mounted at {BPFFS}"));
    }
    println!("    mounting bpffs at {BPFFS}");
    fs::create_dir_all(BPFFS).ok();
    util::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    Ok(format!("mounted bpffs at {BPFFS}"))
}
