//! Optimizers and learning-rate schedules (in progress).
