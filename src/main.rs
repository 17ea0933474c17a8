//! The `segward` binary: everything lives in the library; see `segward::cli`.

/// Blocks of 1 MiB or more (policy texts, large rule tables) get their own mappings, returned
/// to the kernel when freed, instead of fragmenting the heap after glibc raises its threshold
/// (docs/performance.md, "Fleet-scale policy"). The data plane's buffers (≤ 256 KiB) stay in the
/// heap.
const MMAP_THRESHOLD: u32 = 1 << 20;

fn main() -> std::process::ExitCode {
    // An operator's own `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=…` is left in force.
    let tuned = std::env::var_os("GLIBC_TUNABLES")
        .is_some_and(|t| t.to_string_lossy().contains("mmap_threshold"));
    if !tuned {
        let _ = segward_heap::set_mmap_threshold(MMAP_THRESHOLD);
    }
    segward::cli::main()
}
