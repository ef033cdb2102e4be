//! The login rows by signing algorithm and load shape (issue 20), Apache
//! with mod_auth_openidc's row beside them, and the target judged on the
//! sequential RS256 rows of both.

use std::fmt::Write as _;

use super::{Kind, Logins, Report, Target, Verdict, judge, ms, thousands};

/// Who signed the users in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelyingParty {
    /// oidc-gate.
    OidcGate,
    /// Apache 2 with mod_auth_openidc (the peer).
    Apache,
}

impl RelyingParty {
    fn name(self) -> &'static str {
        match self {
            RelyingParty::OidcGate => "oidc-gate",
            RelyingParty::Apache => "Apache 2 + mod_auth_openidc",
        }
    }
}

/// Logins of one (relying party, algorithm, shape).
#[derive(Debug, Clone)]
pub struct LoginShape {
    /// Who signed the users in.
    pub rp: RelyingParty,
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
            "| relying party | ID tokens | load | logins | logins/s | mean login | its CPU/login | its context switches/login |"
        );
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for s in &self.login_shapes {
            let l = &s.logins;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {:.0} |",
                s.rp.name(),
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

    /// The target of issue 20, on the sequential RS256 rows: oidc-gate's
    /// CPU per login at most a third of Apache with mod_auth_openidc's,
    /// measured the same way in the same run.
    pub fn login_shape_targets(&self) -> Vec<Target> {
        let cpu = |rp: RelyingParty| {
            self.login_shapes
                .iter()
                .find(|s| s.rp == rp && s.alg == "RS256" && s.sequential)
                .map(|s| s.logins.median_cpu().as_secs_f64() * 1e3)
        };
        let (gate, apache) = (cpu(RelyingParty::OidcGate), cpu(RelyingParty::Apache));
        let (measured, verdict) = match (gate, apache) {
            (Some(g), Some(a)) if a > 0.0 => (
                format!("{g:.2} ms against Apache's {a:.2} ms: {:.2} of it", g / a),
                judge(g / a <= 1.0 / 3.0),
            ),
            (Some(g), _) => (format!("{g:.2} ms (Apache's logins not measured)"), Verdict::Skipped),
            _ => ("—".into(), Verdict::Skipped),
        };
        vec![Target {
            kind: Kind::LoginSequential,
            goal: "sequential RS256 login on fresh connections ≤ ⅓ of Apache with mod_auth_openidc's CPU per \
                   login measured the same way"
                .into(),
            measured,
            verdict,
        }]
    }
}
