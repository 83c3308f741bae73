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
    /// Check the [relay] (or a mailbox's): SMTP EHLO, TLS and AUTH, or an
    /// OAuth2 token and one read-only API request; report what it
    /// offered or exactly what failed. With --to, also send a test message.
    /// Changes nothing in the store but the OAuth2 tokens it obtains.
    TestRelay {
        /// Check the relay this [[mailbox]] sends through (its own
        /// [mailbox.relay], else [relay]), with its OAuth2 token if it uses one.
        #[arg(long, value_name = "NAME")]
        mailbox: Option<String>,
        /// Send a small test message to this address (repeat for more).
        #[arg(long, value_name = "ADDR")]
        to: Vec<String>,
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Print the argon2id hash of a password for a [[submission.account]]
    /// (password_hash). Asks twice without echo; never prints the password.
    HashPassword {
        /// Read the password as one line from standard input instead.
        #[arg(long)]
        stdin: bool,
    },
    /// OAuth2 mailboxes: token health (status), connecting one (authorize).
    Oauth {
        #[command(subcommand)]
        action: OauthCommand,
    },
    /// Mail rules: what they would do with a message (test).
    Rules {
        #[command(subcommand)]
        action: RulesCommand,
    },
    /// Validate a config file and list every problem found.
    CheckConfig {
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Print which rules match a message file and what would happen
    /// (routing, classification, each rule, the decision). Changes nothing.
    Test {
        /// The message, as raw RFC 5322 bytes (.eml).
        file: PathBuf,
        /// Evaluate for this mailbox (default: the one its To/Cc routes to).
        #[arg(long, value_name = "NAME")]
        mailbox: Option<String>,
        /// The envelope sender (MAIL FROM; "" for the null sender).
        #[arg(long = "from", value_name = "ADDR")]
        envelope_from: Option<String>,
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OauthCommand {
    /// Print each OAuth2 mailbox's token health: access-token expiry, last
    /// good refresh, last error, refresh-token age, client-secret expiry.
    /// Exit 1 when one has a problem.
    Status {
        /// Config file; default ./config/mailgate.toml, else the embedded default.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Connect a mailbox: prints the URL to open in a browser (sign-in and
    /// consent), receives the answer on 127.0.0.1 (PKCE, state checked) and
    /// stores the refresh token encrypted. Stop `mailgate serve` first.
    Authorize {
        /// Name of the [[mailbox]] with an [mailbox.oauth2].
        mailbox: String,
        /// Scopes of this use: imap, smtp, graph, gmail (default: the
        /// upstream's protocol, else imap).
        #[arg(long = "use", value_name = "USE")]
        use_: Option<String>,
        /// How long to wait for the browser's answer.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        wait: Duration,
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
            Ok((config, source)) => {
                // Every notification template loads and renders.
                let problems = mailgate::outbound::templates::check(&config.notify);
                for problem in &problems {
                    eprintln!("{problem}");
                }
                if !problems.is_empty() {
                    return ExitCode::from(2);
                }
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
        Command::Rules {
            action:
                RulesCommand::Test {
                    file,
                    mailbox,
                    envelope_from,
                    config,
                },
        } => match load(config) {
            Ok((config, _)) => match mailgate::app::rules_cli::test(
                &config,
                &file,
                mailbox.as_deref(),
                envelope_from.as_deref(),
            ) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mailgate: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                for problem in e.problems() {
                    eprintln!("{problem}");
                }
                ExitCode::from(2)
            }
        },
        Command::HashPassword { stdin } => match mailgate::app::hash_password::run(stdin) {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mailgate: {e:#}");
                ExitCode::FAILURE
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
        Command::Oauth {
            action: OauthCommand::Status { config },
        } => foreground(config, |c| async move {
            mailgate::app::oauth_cli::status(c).await
        }),
        Command::Oauth {
            action:
                OauthCommand::Authorize {
                    mailbox,
                    use_,
                    wait,
                    config,
                },
        } => foreground(config, |c| async move {
            mailgate::app::oauth_cli::authorize(c, &mailbox, use_.as_deref(), wait).await
        }),
        Command::TestRelay {
            mailbox,
            to,
            config,
        } => foreground(config, |c| async move {
            mailgate::app::relay_test::test_relay(c, mailbox.as_deref(), &to).await
        }),
        Command::Serve { config } => {
            // Held to the end of main: dropping it flushes buffered lines.
            let _log = init_serve_logging();
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
    init_logging("warn");
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

/// Logs to stderr, filtered by [`log_filter`], with [`never_verbose`]
/// layered on top so that no MAILGATE_LOG can lift its cap. Foreground
/// commands write their few lines in place.
fn init_logging(default: &str) {
    install_logging(default, std::io::stderr);
}

/// The server's logging: as [`init_logging`] at info, but written by a
/// thread of its own so that a reader that stops reading never stalls mail
/// (see `app::log_output`). Returns the guard that flushes on drop.
fn init_serve_logging() -> tracing_appender::non_blocking::WorkerGuard {
    use mailgate::app::log_output;
    let env = std::env::var(log_output::BUFFER_ENV).ok();
    let (lines, problem) = match log_output::buffer_lines(env.as_deref()) {
        Ok(n) => (n, None),
        Err(why) => (log_output::DEFAULT_BUFFER_LINES, Some(why)),
    };
    let out = log_output::to_stderr(lines);
    install_logging("info", out.writer);
    if let Some(why) = problem {
        tracing::warn!("{why}");
    }
    out.guard
}

/// The one subscriber every command uses, writing to `writer`.
fn install_logging<W>(default: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(default))
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(never_verbose())
        .init();
}

/// The log filter: MAILGATE_LOG or the default level. What the user asks
/// for is taken as is; [`never_verbose`] is a separate filter because in
/// an EnvFilter a more specific directive (`async_imap::imap_stream=trace`)
/// always beats a forced `async_imap=info`.
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("MAILGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// Drops debug and trace events of the libraries that dump raw protocol
/// traffic (async-imap traces every line it parses, and would trace every
/// line it sends), whatever the EnvFilter enabled. Secrets never reach
/// those libraries in the first place (the IMAP client writes its own
/// lines, LOGIN included); this keeps message contents out of the log too.
fn never_verbose() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool>
{
    tracing_subscriber::filter::filter_fn(|meta: &tracing::Metadata<'_>| {
        let target = meta.target();
        let raw_traffic = ["async_imap", "imap_proto"].iter().any(|t| {
            target
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        });
        !raw_traffic || *meta.level() <= tracing::Level::INFO
    })
}
