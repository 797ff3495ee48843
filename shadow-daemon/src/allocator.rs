//! The daemon's global allocator: mimalloc. The data path allocates and frees small buffers per
//! segment and per exchange, where glibc's malloc cost about a tenth of the daemon's CPU
//! (`cargo xtask bench`, the performance issue's closing note).
//!
//! mimalloc keeps freed pages for reuse; [`release_freed_memory`] hands them back to the
//! kernel once start-up's large temporary allocations (the kernel's BTF, parsed to load the
//! eBPF program) are gone, so that they do not stay in the daemon's resident memory.

/// Every allocation of the daemon (and of its tests) goes through mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns the memory freed so far to the kernel (call once start-up is over).
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers; `force` also purges pages kept for reuse.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
