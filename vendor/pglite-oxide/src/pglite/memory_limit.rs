//! A cap on each backend's linear memory (a tidelake patch of pglite-oxide).
//!
//! The engine's tunables create every memory with its maximum lowered to the
//! cap; a `memory.grow` past it fails, `malloc` returns NULL, and PostgreSQL
//! raises "out of memory" (SQLSTATE 53200) for that statement and goes on.
//! The memory's style (a static reservation with guard pages, which the
//! ahead-of-time compiled code relies on) is the one the module asks for.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmer::sys::vm::{MemoryError, MemoryStyle, TableStyle, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{BaseTunables, Target, Tunables};
use wasmer::{MemoryType, Pages, TableType};

/// Bytes of linear memory one backend may have (0: no cap).
static LIMIT_BYTES: AtomicU64 = AtomicU64::new(0);

/// Cap the linear memory of every backend opened from now on (0: no cap).
pub fn set_memory_limit(bytes: u64) {
    LIMIT_BYTES.store(bytes, Ordering::SeqCst);
}

pub(crate) struct LimitingTunables {
    base: BaseTunables,
}

impl LimitingTunables {
    pub(crate) fn new() -> Self {
        Self { base: BaseTunables::for_target(&Target::default()) }
    }

    fn capped(&self, ty: &MemoryType) -> MemoryType {
        let bytes = LIMIT_BYTES.load(Ordering::SeqCst);
        if bytes == 0 {
            return *ty;
        }
        let limit = Pages(((bytes / 65_536) as u32).max(ty.minimum.0));
        let mut capped = *ty;
        capped.maximum = Some(ty.maximum.map_or(limit, |max| max.min(limit)));
        capped
    }
}

impl Tunables for LimitingTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(&self.capped(ty), style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        // SAFETY: as the caller promises for `BaseTunables`.
        unsafe { self.base.create_vm_memory(&self.capped(ty), style, vm_definition_location) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: as the caller promises for `BaseTunables`.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }
}
