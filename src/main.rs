//! The `oidc-gate` binary: configuration, logging, serve.

use std::io::IsTerminal;
use std::process::ExitCode;

use oidc_gate::app::App;
use oidc_gate::clock::Clock;
use oidc_gate::config::{Args, Command, Config, SessionsCommand};
use oidc_gate::logs::{self, LogFormat};
use tracing_subscriber::util::SubscriberInitExt;

/// jemalloc: per-request allocations were a sixth of the server's CPU with
/// glibc's allocator. Measured on /secret (BENCHMARKS.md): jemalloc ~+10%
/// requests/s at glibc's idle memory; mimalloc was as fast but idled at 27 MB.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Reads `.env` first: it may set LOG_FORMAT and RUST_LOG.
    let args = Args::load();
    let format = match LogFormat::parse(&args.log_format) {
        Ok(format) => format,
        Err(e) => {
            eprintln!("oidc-gate: {e}");
            return ExitCode::from(2);
        }
    };
    // `check` and `sessions` print a report: of the logs, only warnings
    // (unless RUST_LOG says).
    let checking = args.command == Some(Command::Check);
    let reporting = checking || matches!(args.command, Some(Command::Sessions(_)));
    let default_filter = if reporting { "warn" } else { logs::DEFAULT_FILTER };
    // Logs go to stdout; colour only when that is a terminal (not a file or
    // journald), and never against NO_COLOR (https://no-color.org/).
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let subscriber = logs::subscriber(format, logs::env_filter(default_filter), std::io::stdout, colour);
    // `try_init` also turns the `log` records of dependencies into events.
    if subscriber.try_init().is_err() {
        eprintln!("oidc-gate: a log subscriber was already set");
        return ExitCode::FAILURE;
    }
    if checking {
        return check(args).await;
    }
    if let Some(Command::Sessions(command)) = args.command.clone() {
        return sessions(args, command).await;
    }
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oidc-gate: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("oidc-gate: cannot listen on {} (LISTEN): {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let app = match App::build(&config, Clock::system()).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("oidc-gate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.serve(listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oidc-gate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `oidc-gate check`: the report on stdout, each problem on stderr; 0 only
/// when all is well, 2 for an invalid configuration (as the server), else 1.
async fn check(args: Args) -> ExitCode {
    let report = oidc_gate::check::run(args).await;
    print!("{}", report.text);
    for problem in &report.problems {
        eprintln!("problem: {problem}");
    }
    if report.is_ok() {
        println!("\nall good");
        ExitCode::SUCCESS
    } else if report.invalid_configuration {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// `oidc-gate sessions …`: what was found or ended on stdout; 2 for an
/// invalid configuration (as the server), 1 for any other failure.
async fn sessions(args: Args, command: SessionsCommand) -> ExitCode {
    match oidc_gate::admin::run(args, command).await {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oidc-gate: {e}");
            match e {
                oidc_gate::admin::AdminError::Config(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// SIGTERM or Ctrl-C: the server then drains (`SHUTDOWN_GRACE`, `SHUTDOWN_TIMEOUT`).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("stop signal received, shutting down");
}
