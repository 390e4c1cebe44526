//! `havip-agent check`: exit codes (0 valid, 1 invalid, 2 usage or I/O) on
//! good and bad configs, planned over an empty state or an existing store,
//! and no side effects (no file created, the store unchanged).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use havip::{config, control::ControlPlane};

fn demo() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.toml");
    std::fs::read_to_string(p).unwrap()
}

fn check(config: &Path, state_db: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_havip-agent"))
        .args(["check", "--config"])
        .arg(config)
        .arg("--state-db")
        .arg(state_db)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh directory with `body` as its `havip.toml` (returned).
fn config_dir(body: impl AsRef<[u8]>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("havip.toml");
    std::fs::write(&cfg, body).unwrap();
    (dir, cfg)
}

#[test]
fn good_config_is_valid_and_creates_nothing() {
    let (dir, cfg) = config_dir(demo());
    let db = dir.path().join("state/state.redb");
    let before = listing(dir.path());
    let o = check(&cfg, &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("valid against an empty state"), "{}", text(&o));
    assert!(out.contains("create havip havip-demo"), "{}", text(&o));
    assert_eq!(listing(dir.path()), before, "check created files");
    assert!(!db.exists());
    // An executable notify command passes.
    std::fs::write(
        &cfg,
        demo().replace("[agent]\n", "[agent]\nnotify_command = \"/bin/true\"\n"),
    )
    .unwrap();
    let o = check(&cfg, &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn bad_configs_exit_1_with_the_reason() {
    let good = demo();
    // The good config with `line` added to `[agent]`.
    let agent = |line: &str| good.replace("[agent]\n", &format!("[agent]\n{line}\n"));
    // A regular file without an execute bit (mode 0600).
    let plain = tempfile::NamedTempFile::new().unwrap();
    let plain = format!("notify_command = \"{}\"", plain.path().display());
    let cases: &[(&str, String, &str)] = &[
        ("syntax", "[agent\npin_dir = 1\n".to_owned(), "invalid"),
        ("unknown key", agent("colour = \"blue\""), "colour"),
        (
            "bad CIDR",
            good.replace("cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.0/33\""),
            "10.0.0.0/33",
        ),
        (
            "duplicate id",
            format!("{good}\n[[vpc]]\nid = \"vpc-demo\"\ncidr = \"10.9.0.0/16\"\n"),
            "duplicate",
        ),
        (
            "HaVip outside its vSwitch (validation core)",
            good.replace("address = \"10.0.1.100\"", "address = \"10.0.9.100\""),
            "havip-demo",
        ),
        (
            "remote metrics without metrics_allow_remote",
            agent("metrics_listen = \"0.0.0.0:9464\""),
            "metrics_allow_remote",
        ),
        (
            "relative notify_command",
            agent("notify_command = \"notify.sh\""),
            "notify_command",
        ),
        (
            "missing notify_command",
            agent("notify_command = \"/nonexistent/x.sh\""),
            "notify_command",
        ),
        (
            "notify_command not executable",
            agent(&plain),
            "not executable",
        ),
    ];
    for (what, body, needle) in cases {
        assert_ne!(body, &good, "{what}: the case did not change the config");
        let (dir, cfg) = config_dir(body);
        let before = listing(dir.path());
        let o = check(&cfg, &dir.path().join("state.redb"));
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(needle),
            "{what}: {needle:?} not in {}",
            text(&o)
        );
        assert_eq!(listing(dir.path()), before, "{what}: check created files");
    }
}

#[test]
fn usage_and_io_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = check(&dir.path().join("absent.toml"), &dir.path().join("s.redb"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_havip-agent"))
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "no --config: {}", text(&o));
    // A store path that is not a store.
    let cfg = dir.path().join("havip.toml");
    std::fs::write(&cfg, demo()).unwrap();
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, b"not a redb file").unwrap();
    let o = check(&cfg, &junk);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read(&junk).unwrap(), b"not a redb file");
}

#[test]
fn plans_over_the_existing_store_read_only() {
    let (dir, cfg_path) = config_dir(demo());
    let db = dir.path().join("state.redb");
    {
        let cp = ControlPlane::open(&db).unwrap();
        config::seed(&cp, &config::Config::load(&cfg_path).unwrap()).unwrap();
    }
    let bytes = std::fs::read(&db).unwrap();

    // Same config: everything is kept.
    let o = check(&cfg_path, &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("0 to create"), "{}", text(&o));

    // A field no operation changes disagrees with the store: invalid.
    let changed = demo().replace("cidr = \"10.0.0.0/16\"", "cidr = \"10.1.0.0/16\"");
    std::fs::write(&cfg_path, changed).unwrap();
    let o = check(&cfg_path, &db);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in the store"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "check changed the store"
    );
}
