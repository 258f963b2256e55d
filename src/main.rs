use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use mcp_proxy::cli::{Cli, LogFormat};
use mcp_proxy::config::Config;

fn init_logging(cli: &Cli) {
    let filter = match (&cli.log_level, cli.debug) {
        (Some(l), _) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        (None, true) => EnvFilter::new("debug"),
        (None, false) => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(false).with_target(false).init(),
    }
}

/// `--threads`: 0 leaves one core of the machine to the servers and clients beside the proxy
/// (all but one, at least one); a thread handing each message to another costs a wake-up.
fn worker_threads(asked: usize) -> usize {
    if asked > 0 {
        return asked;
    }
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

fn main() -> ExitCode {
    // Started as a stdio server's supervisor: that, and nothing else.
    mcp_proxy::supervisor::run_if_asked();
    let cli = Cli::parse();
    // The demo server is one small loop: a single-threaded runtime serves it best.
    let runtime = if cli.demo_server {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads(cli.threads))
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.demo_server {
        runtime.block_on(mcp_proxy::demo::run(cli.demo_tools));
        return ExitCode::SUCCESS;
    }
    init_logging(&cli);
    let store = mcp_proxy::oauth::store::Store::new(mcp_proxy::oauth::store::Store::default_dir());
    if cli.oauth_list {
        print!("{}", mcp_proxy::oauth::manage::list(&store));
        return ExitCode::SUCCESS;
    }
    if let Some(which) = &cli.oauth_logout {
        let server = if which.is_empty() {
            cli.command_or_url.clone().unwrap_or_default()
        } else {
            which.clone()
        };
        return match mcp_proxy::oauth::manage::logout(&store, &server, cli.resource.as_deref()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcp-proxy: {e}");
                ExitCode::from(2)
            }
        };
    }
    match Config::bounds(&cli) {
        Ok(bounds) => {
            mcp_proxy::limits::set(bounds);
        }
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(which) = &cli.install {
        let Some(file) = &cli.config else {
            eprintln!(
                "mcp-proxy: --install needs --config FILE (the servers file with installCommands)"
            );
            return ExitCode::from(2);
        };
        let base = mcp_proxy::admin::install::base_folder(cli.tools_folder.as_deref());
        let done = runtime.block_on(mcp_proxy::admin::install::run_cli(
            file,
            which,
            cli.reinstall,
            &base,
            cli.install_output_lines,
        ));
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mcp-proxy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    mcp_proxy::route::set_list_changed_interval(std::time::Duration::from_millis(
        cli.list_changed_interval,
    ));
    if cli.oauth_login {
        let servers = config.oauth_servers();
        let done = runtime.block_on(mcp_proxy::oauth::manage::login(servers));
        return match done {
            Ok(text) => {
                eprint!("{text}");
                ExitCode::SUCCESS
            }
            Err(text) => {
                eprint!("mcp-proxy: {text}");
                ExitCode::FAILURE
            }
        };
    }
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signals.cancel();
        });
        mcp_proxy::app::run(config, shutdown).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
