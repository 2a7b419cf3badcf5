//! Host access to a running backend (a tidelake patch of pglite-oxide).
//!
//! PostgreSQL's statement timeout and cancel requests set two flags
//! (`QueryCancelPending`, `InterruptPending`) from a signal handler; the
//! backend checks them at every `CHECK_FOR_INTERRUPTS()`. The WASIX build
//! never delivers the timer signal, so the host sets the same flags itself,
//! from any thread, and wakes a backend that is blocked in a wait (a latch
//! wait such as `pg_sleep`) with a WASIX `SIGUSR1`, whose handler sets the
//! process latch. The backend then raises SQLSTATE 57014 through its normal
//! error path and stays usable.
//!
//! The module exports its data symbols as constant globals holding offsets
//! from `__memory_base` (a PIE module). The linear memory is reserved whole
//! up front (a static memory with a 4 GiB maximum), so its base pointer does
//! not move while the store lives, and it is a shared memory: atomic loads
//! and stores from another thread are well defined.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use wasmer::{Instance, Module, Store};
use wasmer_wasix::wasmer_wasix_types::wasi::{ExitCode, Signal};
use wasmer_wasix::{WasiFunctionEnv, WasiProcess, WasiThread};

/// Where the module's data lives in linear memory when the wasmer-wasix
/// linker does not say otherwise: 2^memory_alignment of its `dylink.0`.
const DEFAULT_MEMORY_BASE: usize = 4096;

/// Static data of PostgreSQL (and of the PGlite glue) the host reads or
/// writes, by exported symbol name (LTO may add a `.llvm.<hash>` suffix).
const SYMBOLS: &[&str] = &[
    "InterruptPending",
    "QueryCancelPending",
    "AuthenticatedUserId",
    "MyProcPid",
    // `SISeg *`: the shared invalidation queue, whose `maxMsgNum` moves at
    // every commit that changed the catalogs.
    "shmInvalBuffer",
    // `TransInvalidationInfo *`: non-null while the open transaction has
    // changed the catalogs.
    "transInvalInfo",
];

/// `pgl_wasix_output_len` reads this static (not exported): the length of
/// the backend output not yet taken by the host. Checked against the
/// function at the first output, and unused if they disagree.
const OUTPUT_LEN_OFFSET: usize = 2_681_960;

struct Shared {
    base: usize,
    /// Bytes of linear memory the backend had at the end of its last call
    /// (memory only grows, so everything below is always mapped).
    size: AtomicUsize,
    symbols: HashMap<&'static str, usize>,
    output_len: Option<usize>,
    output_len_checked: AtomicBool,
    /// True while the owner thread is inside a protocol call.
    in_call: AtomicBool,
    /// Set by `cancel` during the current call.
    cancelled: AtomicBool,
    /// The process was terminated: the instance is dead.
    terminated: AtomicBool,
    /// Signals go to the backend's thread; held under a lock so the handle
    /// is `Sync` whatever those types are.
    wasix: Mutex<(WasiThread, WasiProcess)>,
}

/// A handle to one backend that other threads may hold: cancel what it
/// runs, watch how much output it has produced, or terminate it.
#[derive(Clone)]
pub struct HostHandle(Arc<Shared>);

impl std::fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHandle").field("base", &self.0.base).finish()
    }
}

impl HostHandle {
    pub(crate) fn new(
        store: &mut Store,
        module: &Module,
        instance: &Instance,
        env: &WasiFunctionEnv,
    ) -> Result<Self> {
        let view = env
            .data(&*store)
            .try_memory_view(&*store)
            .context("get WASIX memory view")?;
        let base = view.data_ptr() as usize;
        let size = view.data_size() as usize;
        let memory_base = memory_base(module).unwrap_or(DEFAULT_MEMORY_BASE);
        let mut symbols = HashMap::new();
        for name in SYMBOLS {
            let offset = symbol_offset(store, instance, name)
                .with_context(|| format!("data symbol {name}"))?;
            symbols.insert(*name, memory_base + offset);
        }
        let wasi = env.data(&*store);
        Ok(Self(Arc::new(Shared {
            base,
            size: AtomicUsize::new(size),
            symbols,
            output_len: Some(memory_base + OUTPUT_LEN_OFFSET),
            output_len_checked: AtomicBool::new(false),
            in_call: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
            wasix: Mutex::new((wasi.thread.clone(), wasi.process.clone())),
        })))
    }

    fn cell(&self, address: usize) -> &AtomicI32 {
        assert!(
            address % 4 == 0 && address + 4 <= self.0.size.load(Ordering::SeqCst),
            "address {address:#x} outside memory"
        );
        // SAFETY: the memory is reserved for the store's whole life and its
        // base never moves (static memory); the address is in bounds and
        // aligned; the memory is shared, so atomic access is the defined way
        // to touch it while the backend runs on another thread.
        unsafe { &*((self.0.base + address) as *const AtomicI32) }
    }

    fn symbol(&self, name: &str) -> Result<&AtomicI32> {
        match self.0.symbols.get(name) {
            Some(address) => Ok(self.cell(*address)),
            None => bail!("data symbol {name} is not mapped"),
        }
    }

    /// Read an `int`/`Oid`-sized static of the backend.
    pub fn read_i32(&self, name: &str) -> Result<i32> {
        Ok(self.symbol(name)?.load(Ordering::SeqCst))
    }

    /// Read an `int` at a linear-memory address the backend handed out (a
    /// pointer read with `read_i32`, plus a field offset).
    pub fn read_i32_at(&self, address: u32) -> Option<i32> {
        let address = address as usize;
        (address != 0 && address % 4 == 0 && address + 4 <= self.0.size.load(Ordering::SeqCst))
            .then(|| self.cell(address).load(Ordering::SeqCst))
    }

    /// Write an `int`/`Oid`-sized static of the backend. Only sound for
    /// variables the backend reads afresh (not while it may be writing them).
    pub fn write_i32(&self, name: &str, value: i32) -> Result<()> {
        self.symbol(name)?.store(value, Ordering::SeqCst);
        Ok(())
    }

    /// Ask the statement running now to stop (as `pg_cancel_backend` does):
    /// it fails with SQLSTATE 57014 at its next interrupt check. Returns
    /// false when no protocol call is running.
    pub fn cancel(&self) -> bool {
        if !self.0.in_call.load(Ordering::SeqCst) || self.0.terminated.load(Ordering::SeqCst) {
            return false;
        }
        self.0.cancelled.store(true, Ordering::SeqCst);
        let (Ok(query_cancel), Ok(interrupt)) =
            (self.symbol("QueryCancelPending"), self.symbol("InterruptPending"))
        else {
            return false;
        };
        query_cancel.store(1, Ordering::SeqCst);
        interrupt.store(1, Ordering::SeqCst);
        // Wakes a latch wait: the backend's SIGUSR1 handler sets its latch.
        // (Never SIGINT: the WASIX runtime turns it into an exit.)
        let wasix = self.0.wasix.lock().expect("wasix handles poisoned");
        wasix.0.signal(Signal::Sigusr1);
        true
    }

    /// Whether `cancel` was called during the current (or last) call.
    pub fn was_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Bytes of backend output the current call has produced so far (None
    /// if this build's output buffer could not be located).
    pub fn output_len(&self) -> Option<usize> {
        if !self.0.output_len_checked.load(Ordering::SeqCst) {
            return None;
        }
        let address = self.0.output_len?;
        Some(self.cell(address).load(Ordering::SeqCst).max(0) as usize)
    }

    /// Stop the instance for good: every WASIX call it makes from now on
    /// ends it. The backend cannot be used again; its files are as after a
    /// crash (WAL recovery on the next open).
    pub fn terminate(&self) {
        self.0.terminated.store(true, Ordering::SeqCst);
        let wasix = self.0.wasix.lock().expect("wasix handles poisoned");
        wasix.1.terminate(ExitCode::from(wasmer_wasix::wasmer_wasix_types::wasi::Errno::Canceled));
        wasix.0.signal(Signal::Sigkill);
    }

    /// Bytes of linear memory the backend has (as of its last call).
    pub fn memory_size(&self) -> usize {
        self.0.size.load(Ordering::SeqCst)
    }

    pub fn is_terminated(&self) -> bool {
        self.0.terminated.load(Ordering::SeqCst)
    }

    pub(crate) fn begin_call(&self) {
        self.0.cancelled.store(false, Ordering::SeqCst);
        self.0.in_call.store(true, Ordering::SeqCst);
    }

    /// After a call: no cancel may outlive it and reach the next statement.
    pub(crate) fn end_call(&self, memory_size: Option<usize>) {
        if let Some(size) = memory_size {
            self.0.size.fetch_max(size, Ordering::SeqCst);
        }
        self.0.in_call.store(false, Ordering::SeqCst);
        if let Ok(query_cancel) = self.symbol("QueryCancelPending") {
            query_cancel.store(0, Ordering::SeqCst);
        }
    }

    /// Compare the output-length static with what `pgl_wasix_output_len`
    /// answered; keep the static only if they agree on a non-zero length.
    pub(crate) fn check_output_len(&self, reported: i32) {
        if reported <= 0 || self.0.output_len_checked.load(Ordering::SeqCst) {
            return;
        }
        let Some(address) = self.0.output_len else { return };
        if self.cell(address).load(Ordering::SeqCst) == reported {
            self.0.output_len_checked.store(true, Ordering::SeqCst);
        }
    }
}

fn symbol_offset(store: &mut Store, instance: &Instance, name: &str) -> Result<usize> {
    let global = match instance.exports.get_global(name) {
        Ok(global) => global.clone(),
        Err(_) => {
            let prefix = format!("{name}.llvm.");
            let Some((_, extern_)) = instance
                .exports
                .iter()
                .find(|(export, _)| export.starts_with(&prefix))
            else {
                bail!("not exported")
            };
            match extern_ {
                wasmer::Extern::Global(global) => global.clone(),
                _ => bail!("not a global"),
            }
        }
    };
    match global.get(store) {
        wasmer::Value::I32(offset) => {
            ensure!(offset > 0, "offset {offset}");
            Ok(offset as usize)
        }
        other => bail!("not an i32 global: {other:?}"),
    }
}

/// `1 << memory_alignment` from the module's `dylink.0` memory info.
fn memory_base(module: &Module) -> Option<usize> {
    let section = module.custom_sections("dylink.0").next()?;
    let bytes: &[u8] = &section;
    let mut at = 0usize;
    while at < bytes.len() {
        let kind = bytes[at];
        at += 1;
        let (len, used) = uleb(&bytes[at..])?;
        at += used;
        let payload = bytes.get(at..at + len as usize)?;
        if kind == 1 {
            // WASM_DYLINK_MEM_INFO: memory_size, memory_alignment, ...
            let (_, used) = uleb(payload)?;
            let (align, _) = uleb(&payload[used..])?;
            return Some(1usize << align);
        }
        at += len as usize;
    }
    None
}

fn uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}
