//! The BFFs' memory allocator and its configuration.
//!
//! mimalloc, because glibc's allocator spent a fifth of a request's CPU in
//! malloc/free under load (BENCHMARKS.md). Out of the box mimalloc keeps
//! freed pages for a second before giving them back to the system
//! (`purge_delay`, 1,000 ms in mimalloc 3), and under a gateway's steady
//! churn of request-sized allocations that delay never runs out: a bff-mobile that had served 1,000 requests/s then held
//! 100 MiB under 256 connections, against 43 MiB with purging at once (and
//! no measurable CPU cost). [`configure`] sets that before serving.
//!
//! A binary installs the allocator with
//! `#[global_allocator] static ALLOCATOR: bff_alloc::Allocator = bff_alloc::Allocator;`.

pub use mimalloc::MiMalloc as Allocator;

use std::ffi::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (include/mimalloc.h
/// of the bundled mimalloc 3; the test below checks the index by its
/// distinctive default, 1,000).
const PURGE_DELAY: c_int = 15;

#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{c_int, c_long};

    unsafe extern "C" {
        pub(super) fn mi_option_set(option: c_int, value: c_long);
        pub(super) fn mi_option_get(option: c_int) -> c_long;
    }

    /// Sets a mimalloc option. Safe: options are plain integers mimalloc
    /// reads atomically, and any value is valid for the ones set here.
    pub(super) fn set(option: c_int, value: c_long) {
        // SAFETY: a call into mimalloc's C API with plain integers; it
        // does not touch Rust memory.
        unsafe { mi_option_set(option, value) }
    }

    /// Reads a mimalloc option.
    pub(super) fn get(option: c_int) -> c_long {
        // SAFETY: as above.
        unsafe { mi_option_get(option) }
    }
}

/// Makes mimalloc give freed memory back to the system at once, unless
/// `MIMALLOC_PURGE_DELAY` chose otherwise. Call at start-up (it only
/// matters where [`Allocator`] is the global allocator, and is harmless
/// elsewhere).
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        ffi::set(PURGE_DELAY, 0);
    }
}

/// The purge delay in force, in milliseconds.
pub fn purge_delay() -> c_long {
    ffi::get(PURGE_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOCATOR: Allocator = Allocator;

    #[test]
    fn the_purge_delay_is_the_option_configured() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("MIMALLOC_PURGE_DELAY is set: the default cannot be checked");
            return;
        }
        // mimalloc 3's default for purge_delay (src/options.c): a wrong
        // index reads another option (show_errors 0, use_numa_nodes 0, …).
        assert_eq!(
            purge_delay(),
            1000,
            "index {PURGE_DELAY} is not purge_delay"
        );
        configure();
        assert_eq!(purge_delay(), 0);
        // The neighbours are untouched.
        assert_eq!(ffi::get(PURGE_DELAY + 1), 0, "use_numa_nodes");
    }
}
