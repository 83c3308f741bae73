//! `mailgate serve`: builds everything from the config, runs until
//! SIGINT/SIGTERM, then shuts down in order (see [`super::shutdown`]).

use anyhow::{Context, Result};

use super::App;
use crate::config::Config;

pub async fn run(config: Config) -> Result<()> {
    // Installed first: from here a SIGTERM means an orderly shutdown.
    let signals = Signals::install();
    let app = App::new(config);
    let db_path = app.config().db_path();
    let store = app
        .open_store()
        .with_context(|| format!("opening the database {}", db_path.display()))?;
    let core = app.core(store)?;
    // The journal's backlog goes in before anything new is accepted.
    let front = async {
        core.replay_journal().await?;
        app.front(&core).await
    };
    let front = match front.await {
        Ok(front) => front,
        Err(e) => {
            // Nothing was accepted yet; still end the writer cleanly.
            let _ = core
                .close(
                    super::shutdown::WORKER_TIMEOUT,
                    super::shutdown::WRITER_TIMEOUT,
                )
                .await;
            return Err(e);
        }
    };
    core.fetch.start();
    tokio::spawn(super::log_output::report_dropped(core.metrics.clone()));
    let config = app.config();
    tracing::info!(
        database = %db_path.display(),
        certificate = %front.certificate.display(),
        domains = ?config.server.domains,
        mailboxes = config.mailboxes.len(),
        "mailgate ready"
    );
    signals.wait().await;
    super::shutdown::shutdown(front, core).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some(mut term) = self.term {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
