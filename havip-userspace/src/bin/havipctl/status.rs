//! `havipctl status`: the agent's readiness (`GET /readyz`) in a few lines.

use havip::{
    agent::health::Readiness,
    api::{Client, ClientError},
};

use crate::output::{table, Output};

/// Prints the readiness report; `Ok(false)` when the agent is not ready.
///
/// # Errors
/// The agent is unreachable or its reply is not a readiness report.
pub fn run(client: &Client, out: Output) -> Result<bool, ClientError> {
    let (status, body) = client.raw("GET", "/readyz", None)?;
    let r: Readiness = serde_json::from_slice(&body).map_err(|e| ClientError::Api {
        status,
        code: "BadReply".into(),
        message: format!("not a readiness report: {e}"),
    })?;
    out.show(&r, |r| {
        let mut s = format!(
            "ready:      {}\ndata plane: {}\nstore:      {}\npasses:     {}\n",
            if r.ready { "yes" } else { "NO" },
            if r.dataplane { "loaded" } else { "not loaded" },
            r.store_error.as_deref().unwrap_or("ok"),
            r.passes
        );
        for reason in &r.reasons {
            s.push_str(&format!("  not ready: {reason}\n"));
        }
        s.push('\n');
        let rows: Vec<Vec<String>> = r
            .ports
            .iter()
            .map(|p| vec![p.interface.clone(), p.state.clone()])
            .collect();
        s.push_str(&table(&["PORT", "STATE"], &rows));
        s
    });
    Ok(r.ready)
}
