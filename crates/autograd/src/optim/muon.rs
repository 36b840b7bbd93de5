//! [`Muon`]: momentum orthogonalized by Newton–Schulz, step for step `torch.optim.Muon`, for
//! 2-D weight matrices (the hidden layers; pair it with AdamW for the rest, see
//! [`Combined`](super::Combined)).

use allmlp_tensor_core::gemm::{MatMut, MatRef, gemm_batched};

use super::state::{Core, Update, check_range, invalid, lerp, norm2};
use super::{Optimizer, ParamGroup};
use crate::Result;

/// How [`Muon`] scales the learning rate of an `A × B` matrix (torch's `adjust_lr_fn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MuonLrAdjust {
    /// `lr · √max(1, A/B)` (torch's default, `"original"`).
    Original,
    /// `lr · 0.2 · √max(A, B)` (`"match_rms_adamw"`): the update's RMS matches a typical AdamW
    /// update, so AdamW's learning rate and weight decay carry over.
    MatchRmsAdamw,
}

impl MuonLrAdjust {
    /// The learning rate for a `rows × cols` parameter.
    pub fn adjust(self, lr: f64, rows: usize, cols: usize) -> f64 {
        let (a, b) = (rows as f64, cols as f64);
        match self {
            MuonLrAdjust::Original => lr * (a / b).max(1.0).sqrt(),
            MuonLrAdjust::MatchRmsAdamw => lr * 0.2 * a.max(b).sqrt(),
        }
    }
}

/// Hyper-parameters of [`Muon`]; `Default` is `torch.optim.Muon`'s defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonConfig {
    /// Learning rate (≥ 0). torch default 1e-3.
    pub lr: f64,
    /// Decoupled weight decay, `p ← p·(1 − lr·wd)` with the unadjusted lr, for groups without
    /// their own (≥ 0). torch default 0.1.
    pub weight_decay: f64,
    /// Momentum (≥ 0). torch default 0.95.
    pub momentum: f64,
    /// Nesterov momentum. torch default true.
    pub nesterov: bool,
    /// Coefficients `(a, b, c)` of the quintic iteration `X ← a·X + (b·G + c·G²)·X`, `G = X·Xᵀ`.
    /// torch default (3.4445, −4.775, 2.0315).
    pub ns_coefficients: (f64, f64, f64),
    /// Newton–Schulz iterations (1–99). torch default 5.
    pub ns_steps: usize,
    /// Lower bound of the norm the update is divided by (> 0). torch default 1e-7.
    pub eps: f64,
    /// Learning-rate adjustment per matrix shape. torch default [`MuonLrAdjust::Original`].
    pub adjust_lr: MuonLrAdjust,
}

impl Default for MuonConfig {
    fn default() -> Self {
        MuonConfig {
            lr: 1e-3,
            weight_decay: 0.1,
            momentum: 0.95,
            nesterov: true,
            ns_coefficients: (3.4445, -4.775, 2.0315),
            ns_steps: 5,
            eps: 1e-7,
            adjust_lr: MuonLrAdjust::Original,
        }
    }
}

/// Muon (Jordan et al., 2024) as implemented by `torch.optim.Muon`, for 2-D parameters only.
///
/// For each parameter `p` (`A × B`) with a gradient `g`, in torch's order:
/// ```text
/// buf ← lerp(buf, g, 1 − momentum)
/// u   ← lerp(g, buf, momentum)   (nesterov)   or   buf
/// X   ← u, transposed when A > B, divided by max(‖X‖_F, eps)
/// ns_steps times:  G ← X·Xᵀ;  X ← a·X + (b·G + c·G·G)·X
/// p   ← p·(1 − lr·wd)
/// p   ← p − adjust(lr, A, B)·X   (transposed back)
/// ```
/// torch runs the Newton–Schulz iteration in bfloat16; here it is f32 throughout (the
/// products on the kernel pool, batched over the matrices of one shape), so updates differ
/// from torch's by bfloat16's rounding (≈ 1e-2 relative) and match a float32 run of torch's
/// formula: parameters within 2e-7 relative over six steps (tests/optim_parity.rs).
pub struct Muon {
    core: Core,
    cfg: MuonConfig,
}

impl Muon {
    /// Muon over `groups`; errors on a parameter that is not 2-D, out-of-range
    /// hyper-parameters or duplicate names.
    pub fn new(groups: Vec<ParamGroup>, cfg: MuonConfig) -> Result<Muon> {
        const OP: &str = "Muon::new";
        check_range(OP, "momentum", cfg.momentum, 0.0, None)?;
        check_range(OP, "weight_decay", cfg.weight_decay, 0.0, None)?;
        if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
            return Err(invalid(
                OP,
                format!("eps must be > 0 and finite, got {}", cfg.eps),
            ));
        }
        if !(1..100).contains(&cfg.ns_steps) {
            return Err(invalid(
                OP,
                format!("ns_steps must be in 1..=99, got {}", cfg.ns_steps),
            ));
        }
        let (a, b, c) = cfg.ns_coefficients;
        if ![a, b, c].iter().all(|v| v.is_finite()) {
            return Err(invalid(
                OP,
                format!("ns_coefficients must be finite, got ({a}, {b}, {c})"),
            ));
        }
        for (name, var) in groups.iter().flat_map(|g| &g.params) {
            let shape = var.shape();
            if shape.len() != 2 {
                return Err(invalid(
                    OP,
                    format!(
                        "`{name}` has shape {shape:?}; Muon takes 2-D weight matrices only \
                         (give the others to AdamW)"
                    ),
                ));
            }
        }
        let core = Core::new("Muon", OP, groups, cfg.lr, &["momentum_buffer"])?;
        Ok(Muon { core, cfg })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> MuonConfig {
        MuonConfig {
            lr: self.core.lr,
            ..self.cfg
        }
    }
}

/// The Newton–Schulz orthogonalization (torch's `_zeropower_via_newtonschulz`, in f32) of
/// `batch` row-major `rows × cols` matrices stored one after the other in `u`, each divided by
/// its own norm: the result has `u`'s layout, each matrix's singular values pushed towards 1
/// (into ≈ [0.7, 1.2] with the default coefficients). The products of the batch are shared out
/// whole over the kernel pool, which keeps these mid-sized products on one core each (Muon's
/// matrices of a model come in groups of one shape: one per block).
pub fn orthogonalize(
    u: &[f32],
    batch: usize,
    rows: usize,
    cols: usize,
    coefficients: (f64, f64, f64),
    steps: usize,
    eps: f64,
) -> Result<Vec<f32>> {
    const OP: &str = "muon::orthogonalize";
    let size = rows.saturating_mul(cols);
    if u.len() != batch.saturating_mul(size) {
        return Err(invalid(
            OP,
            format!(
                "expected {batch} matrices of {rows}×{cols} ({} values), got {} values",
                batch.saturating_mul(size),
                u.len()
            ),
        ));
    }
    if size == 0 {
        return Ok(Vec::new());
    }
    let (a, b, cc) = (
        coefficients.0 as f32,
        coefficients.1 as f32,
        coefficients.2 as f32,
    );
    let mut y = u.to_vec();
    for m in y.chunks_exact_mut(size) {
        let norm = norm2(m).max(eps as f32);
        m.iter_mut().for_each(|v| *v /= norm);
    }
    // torch iterates on X = Y (wide) or X = Yᵀ (tall), so that G = X·Xᵀ is the smaller Gram
    // matrix. For a tall Y the same iteration reads, transposed, G = Yᵀ·Y and
    // Y ← a·Y + Y·U (U = b·G + c·G·G is symmetric): no transposed copies.
    let tall = rows > cols;
    let r = rows.min(cols);
    let mut g = vec![0.0f32; batch * r * r];
    let mut upd = vec![0.0f32; batch * r * r];
    let mut next = vec![0.0f32; batch * size];
    let gs = r * r;
    for _ in 0..steps {
        let ym = MatRef::row_major(&y, rows, cols)?;
        let gram = MatMut::row_major(&mut g, r, r)?;
        let (p, q) = if tall { (ym.t(), ym) } else { (ym, ym.t()) };
        gemm_batched(batch, 1.0, p, size, q, size, 0.0, gram, gs)?;
        // torch.addmm(G, G, G, beta=b, alpha=c) = b·G + c·G·G.
        upd.copy_from_slice(&g);
        let gm = MatRef::row_major(&g, r, r)?;
        let um = MatMut::row_major(&mut upd, r, r)?;
        gemm_batched(batch, cc, gm, gs, gm, gs, b, um, gs)?;
        // torch.addmm(X, U, X, beta=a) = a·X + U·X.
        next.copy_from_slice(&y);
        let um = MatRef::row_major(&upd, r, r)?;
        let out = MatMut::row_major(&mut next, rows, cols)?;
        if tall {
            gemm_batched(batch, 1.0, ym, size, um, gs, a, out, size)?;
        } else {
            gemm_batched(batch, 1.0, um, gs, ym, size, a, out, size)?;
        }
        std::mem::swap(&mut y, &mut next);
    }
    Ok(y)
}

impl Optimizer for Muon {
    fn step(&mut self) -> Result<()> {
        const OP: &str = "Muon::step";
        self.core.check_grads(OP)?;
        let cfg = self.cfg;
        let (mom, w) = (cfg.momentum as f32, (1.0 - cfg.momentum) as f32);
        // 1. Momentum and the update to orthogonalize, per parameter.
        let mut pending = Vec::new();
        for (group, states) in self.core.groups.iter().zip(&mut self.core.states) {
            let lr = self.core.lr * group.lr_scale;
            let wd = group.weight_decay.unwrap_or(cfg.weight_decay);
            let decay = (1.0 - lr * wd) as f32;
            for ((_, var), st) in group.params.iter().zip(states.iter_mut()) {
                let Some(u) = Update::take(var) else {
                    continue;
                };
                if st.bufs.is_empty() {
                    st.bufs = vec![vec![0.0; u.value.len()]];
                }
                st.step += 1;
                let g = u.grad.as_slice().expect("Update::take made it contiguous");
                let buf = &mut st.bufs[0];
                for (b, &gi) in buf.iter_mut().zip(g) {
                    *b = lerp(*b, gi, w);
                }
                let update: Vec<f32> = if cfg.nesterov {
                    g.iter()
                        .zip(buf.iter())
                        .map(|(&gi, &b)| lerp(gi, b, mom))
                        .collect()
                } else {
                    buf.clone()
                };
                let (rows, cols) = (u.shape[0], u.shape[1]);
                let neg_lr = (-cfg.adjust_lr.adjust(lr, rows, cols)) as f32;
                pending.push((var, u, update, decay, neg_lr));
            }
        }
        // 2. The Newton–Schulz iterations, one batch per matrix shape.
        let mut shapes: Vec<(usize, usize)> = pending
            .iter()
            .map(|(_, u, ..)| (u.shape[0], u.shape[1]))
            .collect();
        shapes.sort_unstable();
        shapes.dedup();
        for (rows, cols) in shapes {
            let same: Vec<usize> = (0..pending.len())
                .filter(|&i| pending[i].1.shape == [rows, cols])
                .collect();
            let stacked: Vec<f32> = same
                .iter()
                .flat_map(|&i| pending[i].2.iter().copied())
                .collect();
            let o = orthogonalize(
                &stacked,
                same.len(),
                rows,
                cols,
                cfg.ns_coefficients,
                cfg.ns_steps,
                cfg.eps,
            )?;
            for (&i, o) in same.iter().zip(o.chunks_exact(rows * cols)) {
                pending[i].2.copy_from_slice(o);
            }
        }
        // 3. Decay and update.
        for (var, mut u, o, decay, neg_lr) in pending {
            for (p, &x) in u.value.iter_mut().zip(&o) {
                *p *= decay;
                *p += neg_lr * x;
            }
            u.store(var)?;
        }
        Ok(())
    }

    delegate_to_core!("Muon::set_lr", "Muon::load_state");
}
