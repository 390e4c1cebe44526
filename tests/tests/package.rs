//! The Debian package: `cargo xtask package --no-build` from the release
//! binaries; its contents, its conffile, stripped binaries; installed into
//! a scratch root, the default config passes `havip-agent check` and the
//! unit passes `systemd-analyze verify`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn package_installs_and_its_unit_verifies() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let out_dir = scratch.path().join("out");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(repo())
        .args(["xtask", "package", "--no-build", "--out"])
        .arg(&out_dir));
    let deb = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in the output dir");

    let listing =
        String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout).expect("utf-8");
    println!("{listing}");
    for path in [
        "./usr/bin/havip-agent",
        "./usr/bin/havipctl",
        "./lib/systemd/system/havip-agent.service",
        "./etc/havip/havip.toml",
        "./usr/share/man/man1/havipctl.1.gz",
        "./usr/share/man/man1/havipctl-havip.1.gz",
        "./usr/share/man/man1/havip-agent.1.gz",
        "./usr/share/bash-completion/completions/havipctl",
        "./usr/share/zsh/vendor-completions/_havipctl",
        "./usr/share/fish/vendor_completions.d/havipctl.fish",
        "./usr/share/doc/havip/LICENSE-MIT",
        "./usr/share/doc/havip/LICENSE-APACHE",
        "./usr/share/doc/havip/copyright",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} not in the package"
        );
    }
    assert!(
        !listing.contains("gen-docs"),
        "the hidden gen-docs subcommand got a man page"
    );

    let ctrl = scratch.path().join("DEBIAN");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl));
    assert_eq!(
        std::fs::read_to_string(ctrl.join("conffiles")).expect("conffiles"),
        "/etc/havip/havip.toml\n"
    );
    let control = std::fs::read_to_string(ctrl.join("control")).expect("control");
    assert!(control.contains("Package: havip\n"), "{control}");

    let root = scratch.path().join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    for bin in ["havip-agent", "havipctl"] {
        let path = root.join("usr/bin").join(bin);
        let sections = String::from_utf8(run(Command::new("readelf").arg("-S").arg(&path)).stdout)
            .expect("utf-8");
        assert!(
            !sections.contains(".symtab") && !sections.contains(".debug_info"),
            "{bin} is not stripped"
        );
        run(Command::new(&path).arg("--version"));
    }
    // The shipped default config is valid (checked against an empty state).
    run(Command::new(root.join("usr/bin/havip-agent"))
        .args(["check", "--config"])
        .arg(root.join("etc/havip/havip.toml"))
        .arg("--state-db")
        .arg(root.join("var/lib/havip/state.redb")));

    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        println!("skipping systemd-analyze verify - systemd-analyze is not installed");
        return;
    };
    // The scratch root stands for a host with systemd: it gets the host's
    // targets and slices (the unit's After=/WantedBy= and the default
    // dependencies), and `man` looks for the Documentation= pages in it.
    let units = root.join("lib/systemd/system");
    for e in std::fs::read_dir("/lib/systemd/system").expect("host units") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "target" || x == "slice") {
            if let Some(name) = p.file_name() {
                // Dangling symlinks (aliases) are skipped.
                let _ = std::fs::copy(&p, units.join(name));
            }
        }
    }
    let unit = units.join("havip-agent.service");
    let out = Command::new(analyze)
        .env("MANPATH", root.join("usr/share/man"))
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("systemd-analyze verify: {}\n{text}", out.status);
    assert!(out.status.success(), "systemd-analyze verify: {text}");
    assert!(
        !text.contains("havip-agent.service:"),
        "systemd-analyze complains about the unit: {text}"
    );
}
