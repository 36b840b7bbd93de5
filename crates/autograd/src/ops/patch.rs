//! Patch and partition layouts as differentiable ops.
//!
//! Each is a reshape/permute composition (see `allmlp_tensor_core::patch`), so
//! its backward is the inverse layout change, recorded by the shape ops.

use allmlp_tensor_core::patch::PatchOrder;

use crate::{AutogradError, Result, Var};

fn nchw(op: &'static str, v: &Var) -> Result<[usize; 4]> {
    match v.shape()[..] {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => Err(AutogradError::Tensor(
            allmlp_tensor_core::TensorError::shape(
                op,
                "a 4-d tensor (N×C×H×W)",
                format!("shape {s:?}"),
            ),
        )),
    }
}

fn divides(op: &'static str, hw: (usize, usize), p: (usize, usize)) -> Result<()> {
    if p.0 == 0 || p.1 == 0 || !hw.0.is_multiple_of(p.0) || !hw.1.is_multiple_of(p.1) {
        return Err(AutogradError::Tensor(
            allmlp_tensor_core::TensorError::shape(
                op,
                format!("height and width divisible by {}×{}", p.0, p.1),
                format!("{}×{}", hw.0, hw.1),
            ),
        ));
    }
    Ok(())
}

impl Var {
    /// `[B, C, H, W]` → `[B, (H/P)·(W/P), P·P·C]` (see `allmlp_tensor_core::patch::patchify`).
    pub fn patchify(&self, p: usize, order: PatchOrder) -> Result<Var> {
        let [b, c, h, w] = nchw("patchify", self)?;
        divides("patchify", (h, w), (p, p))?;
        let perm: &[usize] = match order {
            PatchOrder::ChannelFirst => &[0, 2, 4, 1, 3, 5],
            PatchOrder::ChannelLast => &[0, 2, 4, 3, 5, 1],
        };
        self.reshape(&[b, c, h / p, p, w / p, p])?
            .permute(perm)?
            .reshape(&[b, (h / p) * (w / p), p * p * c])
    }

    /// RepMLP partition `[N, C, H, W]` → `[N·(H/h)·(W/w), C, h, w]`.
    pub fn partition(&self, h: usize, w: usize) -> Result<Var> {
        let [n, c, hh, ww] = nchw("partition", self)?;
        divides("partition", (hh, ww), (h, w))?;
        let (hp, wp) = (hh / h, ww / w);
        self.reshape(&[n, c, hp, h, wp, w])?
            .permute(&[0, 2, 4, 1, 3, 5])?
            .reshape(&[n * hp * wp, c, h, w])
    }

    /// Inverse of [`Var::partition`]: `[N·Hp·Wp, C, h, w]` → `[N, C, Hp·h, Wp·w]`.
    pub fn unpartition(&self, n: usize, hp: usize, wp: usize) -> Result<Var> {
        let [rows, c, h, w] = nchw("unpartition", self)?;
        if n.checked_mul(hp).and_then(|v| v.checked_mul(wp)) != Some(rows) {
            return Err(AutogradError::Tensor(
                allmlp_tensor_core::TensorError::shape(
                    "unpartition",
                    format!("N·Hp·Wp = {n}·{hp}·{wp} partitions"),
                    format!("{rows}"),
                ),
            ));
        }
        self.reshape(&[n, hp, wp, c, h, w])?
            .permute(&[0, 3, 1, 4, 2, 5])?
            .reshape(&[n, c, hp * h, wp * w])
    }
}

#[cfg(test)]
mod tests {
    use crate::Var;
    use crate::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_tensor_core::Tensor;
    use allmlp_tensor_core::patch::{self, PatchOrder};

    #[test]
    fn layouts_match_tensor_core_and_gradcheck() {
        let x = Tensor::randn(&[2, 3, 4, 6], 0.0, 1.0, 1).unwrap();
        for order in [PatchOrder::ChannelFirst, PatchOrder::ChannelLast] {
            let v = Var::constant(x.clone()).patchify(2, order).unwrap();
            assert_eq!(v.value(), patch::patchify(&x, 2, order).unwrap());
            gradcheck(
                "patchify",
                std::slice::from_ref(&x),
                |v| v[0].patchify(2, order),
                GradcheckOptions::default(),
            )
            .unwrap();
        }
        let p = Var::constant(x.clone()).partition(2, 3).unwrap();
        assert_eq!(p.value(), patch::partition(&x, 2, 3).unwrap());
        assert_eq!(p.unpartition(2, 2, 2).unwrap().value(), x);
        gradcheck(
            "partition",
            std::slice::from_ref(&x),
            |v| v[0].partition(2, 3),
            GradcheckOptions::default(),
        )
        .unwrap();
        assert!(Var::constant(x.clone()).partition(3, 3).is_err());
        assert!(p.unpartition(1, 2, 2).is_err());
        // Counts whose product overflows are an error, not an overflow panic.
        assert!(p.unpartition(usize::MAX, 2, 2).is_err());
    }
}
