#![doc = include_str!("../README.md")]

pub mod bn;
pub mod conv_to_fc;
pub mod global_perceptron;
pub mod kernel;
pub mod repmlp;
pub mod repvgg;

pub use allmlp_layers as layers;
pub use allmlp_tensor_core::{Result, Tensor, TensorError};
pub use bn::{BnParams, fuse_bn, fuse_bn_repeat_interleave};
pub use conv_to_fc::{conv_bias_to_fc, conv_to_fc, conv_to_fc_algorithm1};
pub use global_perceptron::fold_bn_into_fc1;
pub use kernel::{merge_branches, pad_kernel};
pub use repmlp::{Fc3Bn, equivalent_fc3};
pub use repvgg::{ConvBn, identity_kernel, repvgg_merge};
