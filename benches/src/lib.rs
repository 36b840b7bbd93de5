//! Shared shapes and helpers for allmlp's criterion benchmarks.
//!
//! The shapes are the products the models spend their time in; `cargo xtask
//! bench` reads criterion's results and prints one summary table.

/// GEMM shapes `(m, k, n)`: Mixer/ResMLP channel and token MLPs and square references.
pub const GEMM_SHAPES: [(usize, usize, usize); 8] = [
    (1568, 512, 2048),
    (1568, 2048, 512),
    (4096, 196, 256),
    (4096, 256, 196),
    (1024, 1024, 1024),
    (6272, 128, 512),
    (6272, 512, 128),
    (8192, 49, 64),
];
