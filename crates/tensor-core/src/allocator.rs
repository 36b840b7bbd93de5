//! Process-wide allocator tuning for programs that run many large tensor ops.
//!
//! Every op allocates its output; with glibc's defaults, buffers above the
//! dynamic mmap threshold come from fresh `mmap`s and freed memory is trimmed
//! back to the OS, so each step pays page faults and zeroing again. Raising the
//! mmap and trim thresholds keeps freed activation buffers in the heap for the
//! next step. Measured on six Mixer-tiny training steps (batch 128, two threads,
//! `target/release/examples/train_steps mixer 6 [--system-malloc]`, `docs/perf.md`):
//! wall 3.77 s → 3.28 s (−13%), system time 1.08 s → 0.43 s (medians of three).
//!
//! This changes process-global state, so the library never does it on its
//! own: binaries (the `allmlp` CLI, the benchmarks) opt in by calling
//! [`keep_freed_memory`] once at startup.

/// Raises glibc's mmap and trim thresholds (1 GiB, 2 GiB) so freed tensor
/// buffers are reused instead of returned to the OS. Returns whether the
/// settings were applied (always `false` off glibc Linux, where it does nothing).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only updates glibc's allocator parameters; it is
        // thread-safe and valid to call at any time with these documented
        // parameter numbers and non-negative values.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn applies_on_glibc_and_allocation_still_works() {
        let applied = super::keep_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        // A large buffer after the change: allocated, written, freed, reused.
        for _ in 0..3 {
            let v = vec![1.0f32; 8 << 20];
            assert_eq!(v.iter().sum::<f32>(), (8 << 20) as f32);
        }
    }
}
