//! # allmlp-layers
//!
//! Layers (Linear, LayerNorm, Affine, Conv2d, BatchNorm, GELU, …) with the
//! parameter names PyTorch uses, and safetensors state dicts. Filled by the
//! layers issue; today it only fixes the crate's place in the layering.

pub use allmlp_autograd as autograd;
