//! Softmax, log-softmax and cross-entropy (placeholder while norm is written).
