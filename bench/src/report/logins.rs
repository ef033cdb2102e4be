//! The login rows by signing algorithm and load shape (issue 20), and the
//! target judged on the sequential RS256 row.

use std::fmt::Write as _;

use super::{Kind, Logins, Report, Target, Verdict, ms, thousands};

/// Logins of one (algorithm, shape).
#[derive(Debug, Clone)]
pub struct LoginShape {
    /// The ID tokens' algorithm.
    pub alg: &'static str,
    /// One login at a time, a fresh connection per request (else eight in
    /// flight on kept-alive connections).
    pub sequential: bool,
    /// What was measured.
    pub logins: Logins,
}

impl LoginShape {
    fn load(&self) -> &'static str {
        if self.sequential {
            "one at a time, fresh connection per request"
        } else {
            "8 in flight, connections kept alive"
        }
    }
}

impl Report {
    /// Section 2b (nothing when not measured).
    pub fn login_shapes_table(&self, out: &mut String) {
        if self.login_shapes.is_empty() {
            return;
        }
        out.push_str(
            "### 2b. Login cost by the provider's signing algorithm and the load (SQLite, provider in its own process)\n\n",
        );
        let _ = writeln!(
            out,
            "| ID tokens | load | logins | logins/s | mean login | oidc-gate CPU/login | its context switches/login |"
        );
        out.push_str("|---|---|---|---|---|---|---|\n");
        for s in &self.login_shapes {
            let l = &s.logins;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {:.0} |",
                s.alg,
                s.load(),
                thousands(l.count),
                l.count as f64 / l.elapsed.as_secs_f64(),
                ms(l.elapsed.mul_f64(l.concurrency as f64 / l.count.max(1) as f64)),
                l.cpu_cell(),
                l.context_switches as f64 / l.count.max(1) as f64,
            );
        }
        out.push('\n');
    }

    /// The target of issue 20, on the sequential RS256 row: a third of
    /// Apache with mod_auth_openidc's CPU per login measured the same way in
    /// the same run. This benchmark does not sign in through Apache, so the
    /// row's figure is shown and the verdict left open.
    pub fn login_shape_targets(&self) -> Vec<Target> {
        let row = self.login_shapes.iter().find(|s| s.alg == "RS256" && s.sequential);
        let cpu = row.map(|s| s.logins.median_cpu().as_secs_f64() * 1e3);
        vec![Target {
            kind: Kind::LoginCpu,
            goal: "sequential RS256 login on fresh connections ≤ ⅓ of Apache with mod_auth_openidc's CPU per \
                   login measured the same way (Apache's logins are not measured in this run)"
                .into(),
            measured: cpu.map_or("—".into(), |c| format!("{c:.2} ms")),
            verdict: Verdict::Skipped,
        }]
    }
}
