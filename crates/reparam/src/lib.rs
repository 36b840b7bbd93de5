//! # allmlp-reparam
//!
//! Structural re-parameterization: BN fusion, kernel padding and merging,
//! conv→FC (RepMLP's Algorithm 1), RepVGG merges and train→deploy model
//! conversion. Filled by the reparam issue.

pub use allmlp_layers as layers;
