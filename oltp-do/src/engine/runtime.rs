//! The process-wide engine runtime: the PGlite module preload and the tenant
//! template, prepared once in the background at start-up so the server
//! listens at once and the first query waits only for what is left.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pglite_oxide::Pglite;

use super::settings::EngineSettings;
use super::template::{self, Spares};
use super::watchdog::Watchdog;
use crate::config::OltpConfig;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
enum Phase {
    Preparing,
    Ready(Duration),
    Failed(String),
}

/// Load the engine's runtime into this process, with every bundled
/// extension where any database finds it and those tenants may create
/// marked trusted (see `model::extensions`). Idempotent; the first call in
/// a process does the work.
pub fn preload() -> Result<()> {
    Pglite::preload().map_err(Error::pglite("preload the PGlite runtime"))?;
    pglite_oxide::install_shared_extensions(model::extensions::OFFERED)
        .map_err(Error::pglite("install the engine's extensions"))?;
    Ok(())
}

pub struct EngineRuntime {
    phase: Mutex<Phase>,
    changed: Condvar,
    settings: EngineSettings,
    template_dir: PathBuf,
    spares: Spares,
    watchdog: Watchdog,
}

impl EngineRuntime {
    /// Start preparing in the background and return at once.
    pub fn start(config: &OltpConfig) -> Arc<Self> {
        pglite_oxide::set_memory_limit(config.tenant_memory);
        let runtime = Arc::new(Self {
            phase: Mutex::new(Phase::Preparing),
            changed: Condvar::new(),
            settings: config.engine.clone(),
            template_dir: config.template_dir(),
            spares: Spares::new(config.spares_dir(), config.template_dir(), config.spare_tenants),
            watchdog: Watchdog::start(),
        });
        let preparing = runtime.clone();
        let migrations = config.migrations.clone();
        std::thread::Builder::new()
            .name("engine-preload".into())
            .stack_size(8 * 1024 * 1024)
            .spawn(move || {
                let started = Instant::now();
                let outcome = preload()
                    .and_then(|()| template::prepare(&preparing.template_dir, &preparing.settings, migrations.as_deref()));
                let phase = match outcome {
                    Ok(()) => {
                        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "engine runtime ready");
                        Phase::Ready(started.elapsed())
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "engine runtime failed to prepare");
                        Phase::Failed(err.to_string())
                    }
                };
                let ready = matches!(phase, Phase::Ready(_));
                *preparing.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = phase;
                preparing.changed.notify_all();
                if ready {
                    preparing.spares.replenish_forever();
                }
            })
            .expect("spawn engine preload thread");
        runtime
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The watchdog that enforces every tenant's statement limits.
    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// Block the calling (actor) thread until the runtime is ready.
    pub fn wait_ready(&self) -> Result<()> {
        let mut phase = self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            match &*phase {
                Phase::Ready(_) => return Ok(()),
                Phase::Failed(err) => return Err(Error::Engine(err.clone())),
                Phase::Preparing => {
                    phase = self.changed.wait(phase).unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
    }

    /// `None` while preparing; the preparation time once ready; the error if it failed.
    pub fn readiness(&self) -> std::result::Result<Option<Duration>, String> {
        match &*self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Phase::Preparing => Ok(None),
            Phase::Ready(took) => Ok(Some(*took)),
            Phase::Failed(err) => Err(err.clone()),
        }
    }

    /// Create the tenant's database if it does not exist yet: a spare if
    /// one is ready, else a fresh copy of the template.
    pub fn ensure_tenant_root(&self, root: &Path) -> Result<()> {
        if root.exists() || self.spares.take(root) {
            return Ok(());
        }
        template::instantiate(&self.template_dir, root)
    }
}
