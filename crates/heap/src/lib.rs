//! Giving the heap pages the allocator holds free back to the kernel.
//!
//! glibc's malloc returns a freed page to the kernel only when it lies at the top of an arena;
//! pages freed below memory still in use stay resident, on the arena's free lists, for the life
//! of the process. A policy build frees tens of megabytes (parse trees, the documents it cut,
//! the policy it replaced) below the policy it keeps, so a sidecar's RSS sat at the high-water
//! mark of its last two builds instead of at what it holds (docs/performance.md, "Fleet-scale
//! policy"). [`release_free_pages`] is glibc's `malloc_trim(0)`: it walks every arena and
//! `madvise(MADV_DONTNEED)`s each whole free page.
//!
//! This is segward's one `unsafe` call, kept in its own crate so that the segward crate itself
//! still forbids `unsafe` (CONTRIBUTING.md).

/// Gives every whole free page of every malloc arena back to the kernel; `true` when glibc
/// released some. Takes a few milliseconds on a heap of tens of megabytes and locks each arena
/// in turn while it walks it, so call it off the request path, after large frees (segward: on
/// the policy thread, after a build and after the policy it replaced is dropped).
///
/// Off glibc (musl, other systems) it does nothing and returns `false`: there is no such call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[must_use = "whether anything was released; ignore it with `let _ =`"]
pub fn release_free_pages() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition; glibc documents it
    // MT-Safe (it takes each arena's lock in turn), so it may run beside any other thread's
    // allocations and frees.
    #[allow(unsafe_code)]
    let released = unsafe { libc::malloc_trim(0) };
    released == 1
}

/// Off glibc there is no such call: nothing is done.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[must_use = "whether anything was released; ignore it with `let _ =`"]
pub fn release_free_pages() -> bool {
    false
}

/// Serves every block of `bytes` or more from its own mapping, returned to the kernel when the
/// block is freed (glibc's `mallopt(M_MMAP_THRESHOLD, bytes)`, as
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=BYTES` would). Without it glibc raises the
/// threshold to the size of each such block freed, up to 32 MiB, so that after the first policy
/// text (megabytes) is freed, later ones are served from the arena and fragment it. `true` when
/// glibc took the value (it refuses more than 32 MiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[must_use = "whether glibc took the value; ignore it with `let _ =`"]
pub fn set_mmap_threshold(bytes: u32) -> bool {
    let Ok(bytes) = libc::c_int::try_from(bytes) else {
        return false;
    };
    // SAFETY: `mallopt` takes no pointer and has no precondition; glibc documents it MT-Unsafe
    // only in the sense that a concurrent malloc may still see the old value, which is harmless.
    #[allow(unsafe_code)]
    let taken = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) };
    taken == 1
}

/// Off glibc there is no such setting: nothing is done.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[must_use = "whether glibc took the value; ignore it with `let _ =`"]
pub fn set_mmap_threshold(_bytes: u32) -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Resident pages of this process, in KiB (`/proc/self/statm`'s second field).
    fn rss_kib() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4
    }

    /// RSS is the process's: one test measures at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The case segward meets: many small blocks freed below a few kept ones stay resident
    /// until released, and are gone from RSS after.
    #[test]
    fn freed_pages_below_live_blocks_leave_rss_when_released() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // On one fresh thread, so that its arena holds only these blocks.
        std::thread::spawn(|| {
            let mut freed = Vec::new();
            let mut kept = Vec::new();
            for i in 0..64 * 1024 {
                // 1 KiB blocks, written so their pages are resident; every 1024th is kept, so
                // no stretch of the freed ones reaches the top of the arena.
                let block = vec![i as u8; 1024];
                if i % 1024 == 1023 {
                    kept.push(block);
                } else {
                    freed.push(block);
                }
            }
            let before_free = rss_kib();
            drop(freed);
            let after_free = rss_kib();
            let released = super::release_free_pages();
            let after_release = rss_kib();
            // 63 MiB were freed: glibc keeps them resident after free(), below the kept blocks.
            assert!(
                before_free.saturating_sub(after_free) < 16 * 1024,
                "free() alone returned {} KiB",
                before_free - after_free
            );
            assert!(released, "malloc_trim(0) released nothing");
            assert!(
                after_free.saturating_sub(after_release) > 48 * 1024,
                "release_free_pages returned only {} KiB of 63 MiB freed ({after_free} -> \
                 {after_release} KiB)",
                after_free.saturating_sub(after_release)
            );
            drop(kept);
        })
        .join()
        .unwrap();
    }

    /// With the threshold fixed, a large block freed after a larger one still leaves RSS at
    /// once: glibc did not raise the threshold and serve it from the arena.
    #[test]
    fn with_a_fixed_threshold_large_blocks_leave_rss_when_freed() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        assert!(super::set_mmap_threshold(1 << 20));
        assert!(
            !super::set_mmap_threshold(u32::MAX),
            "glibc refuses more than 32 MiB"
        );
        std::thread::spawn(|| {
            // Freeing an 8 MiB block is what raises glibc's dynamic threshold to 8 MiB.
            drop(vec![1u8; 8 << 20]);
            let mut large = Vec::new();
            let mut kept = Vec::new();
            for i in 0..16u8 {
                large.push(vec![i; 2 << 20]);
                kept.push(vec![i; 512]);
            }
            let before_free = rss_kib();
            drop(large);
            let after_free = rss_kib();
            assert!(
                before_free.saturating_sub(after_free) > 24 * 1024,
                "freeing 32 MiB of 2 MiB blocks returned only {} KiB ({before_free} -> \
                 {after_free} KiB)",
                before_free.saturating_sub(after_free)
            );
            drop(kept);
        })
        .join()
        .unwrap();
    }
}
