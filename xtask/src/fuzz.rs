//! `fuzz`: build, then run the randomized frame campaign (`havip-campaign`
//! from the tests crate) through `BPF_PROG_TEST_RUN` on the fixture bed.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{
    build,
    util::{self, step},
};

pub fn fuzz(frames: u64, seed: u64) -> Result<()> {
    util::require_root("the frame campaign (network namespaces, BPF)")?;
    let bin_dir = build::build(false)?;
    let campaign = bin_dir.join("havip-campaign");
    if !campaign.is_file() {
        bail!("{} is missing after the build", campaign.display());
    }
    let s = step(format!("frame campaign: {frames} frames, seed {seed}"));
    let mut cmd = Command::new(&campaign);
    cmd.args(["--frames", &frames.to_string(), "--seed", &seed.to_string()]);
    println!("    $ {}", util::render(&cmd));
    util::flush();
    let status = cmd
        .status()
        .with_context(|| format!("cannot execute {}", campaign.display()))?;
    if !status.success() {
        bail!("the frame campaign found violations or failed ({status})");
    }
    s.done();
    Ok(())
}
