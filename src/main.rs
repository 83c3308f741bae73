//! The `mailgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mailgate::config::Config;

#[derive(Parser)]
#[command(
    name = "mailgate",
    version,
    about = "Self-hosted mail gateway that turns email into helpdesk tickets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: SMTP listeners, HTTP API and metrics.
    Serve {
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Pull new mail from one mailbox's upstream now, in the foreground.
    /// Asks for the password when the config names no source for it.
    Sync {
        /// Name of the [[mailbox]] with an [mailbox.upstream].
        mailbox: String,
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Connect, log in and open the folder of one mailbox's upstream, and
    /// report what was found or exactly what failed. Changes nothing.
    TestConnection {
        /// Name of the [[mailbox]] with an [mailbox.upstream].
        mailbox: String,
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and list every problem found.
    CheckConfig {
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// How long the runtime waits, after a command ended, for tasks it did not join.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

fn load(path: Option<PathBuf>) -> Result<(Config, String), mailgate::config::ConfigError> {
    match path {
        Some(p) => Ok((Config::load(&p)?, p.display().to_string())),
        None => Config::load_default(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load(config) {
            Ok((_, source)) => {
                println!("config OK: {source}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                for problem in e.problems() {
                    eprintln!("{problem}");
                }
                ExitCode::from(2)
            }
        },
        Command::Sync { mailbox, config } => foreground(config, |c| async move {
            mailgate::app::commands::sync(c, &mailbox)
                .await
                .map(|()| true)
        }),
        Command::TestConnection { mailbox, config } => foreground(config, |c| async move {
            mailgate::app::commands::test_connection(c, &mailbox).await
        }),
        Command::Serve { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(log_filter("info"))
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let (config, source) = match load(config) {
                Ok(c) => c,
                Err(e) => {
                    for problem in e.problems() {
                        eprintln!("config: {problem}");
                    }
                    return ExitCode::from(2);
                }
            };
            tracing::info!(config = %source, "starting mailgate {}", env!("CARGO_PKG_VERSION"));
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(mailgate::app::serve::run(config));
            // Everything that matters was joined; a stray blocking read must not hold the exit.
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("mailgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs a foreground command: logs to stderr (warnings only unless
/// MAILGATE_LOG says otherwise), exit 0 on success, 1 on failure, 2 on a bad config.
fn foreground<F, Fut>(config: Option<PathBuf>, run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    tracing_subscriber::fmt()
        .with_env_filter(log_filter("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match load(config) {
        Ok((c, _)) => c,
        Err(e) => {
            for problem in e.problems() {
                eprintln!("config: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mailgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter: MAILGATE_LOG or the default level. async-imap logs the
/// commands it sends (LOGIN with its password) and whole responses at debug
/// and trace, so it is held at info whatever MAILGATE_LOG asks for.
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    match "async_imap=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}
