//! The `mailgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Validate a config file and list every problem found.
    CheckConfig {
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

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
        Command::Serve { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("MAILGATE_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
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
            match runtime.block_on(mailgate::server::run(config)) {
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
