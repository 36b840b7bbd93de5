//! Patch and partition layouts used by the all-MLP models.
//!
//! - [`patchify`] / [`unpatchify`]: images `[B, C, H, W]` ↔ token sequences
//!   `[B, S, P·P·C]` with `S = (H/P)·(W/P)` tokens in row-major patch order.
//!   The feature order inside a token is either timm's conv-stem order
//!   `(c, py, px)` — the flattening of a `Conv2d(C, D, P, stride=P)` weight — or
//!   the einops order `(py, px, c)` of `rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)')`.
//! - [`partition`] / [`unpartition`]: RepMLP's `[N, C, H, W]` ↔
//!   `[N·Hp·Wp, C, h, w]`, partition `(n, i, j)` at row `(n·Hp + i)·Wp + j`.

use crate::error::fmt_shape;
use crate::{Result, Tensor, TensorError};

/// Feature order inside one patch token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchOrder {
    /// `(c, py, px)`: matches a conv stem's weight layout (timm).
    ChannelFirst,
    /// `(py, px, c)`: einops `(p1 p2 c)`.
    ChannelLast,
}

fn nchw(op: &'static str, x: &Tensor) -> Result<[usize; 4]> {
    x.expect_rank(op, 4, "N×C×H×W")?;
    let s = x.shape();
    Ok([s[0], s[1], s[2], s[3]])
}

fn divisible(op: &'static str, what: &str, hw: (usize, usize), p: (usize, usize)) -> Result<()> {
    if p.0 == 0 || p.1 == 0 || !hw.0.is_multiple_of(p.0) || !hw.1.is_multiple_of(p.1) {
        return Err(TensorError::shape(
            op,
            format!("height and width divisible by the {what} {}×{}", p.0, p.1),
            format!("{}×{}", hw.0, hw.1),
        ));
    }
    Ok(())
}

/// `[B, C, H, W]` → `[B, (H/P)·(W/P), P·P·C]`.
pub fn patchify(x: &Tensor, p: usize, order: PatchOrder) -> Result<Tensor> {
    let [b, c, h, w] = nchw("patchify", x)?;
    divisible("patchify", "patch size", (h, w), (p, p))?;
    let (hp, wp) = (h / p, w / p);
    let six = x.reshape(&[b, c, hp, p, wp, p])?;
    let perm: &[usize] = match order {
        PatchOrder::ChannelFirst => &[0, 2, 4, 1, 3, 5],
        PatchOrder::ChannelLast => &[0, 2, 4, 3, 5, 1],
    };
    six.permute(perm)?.reshape(&[b, hp * wp, p * p * c])
}

/// `[B, S, P·P·C]` → `[B, C, H, W]`, the inverse of [`patchify`] for an `H×W` image.
pub fn unpatchify(
    tokens: &Tensor,
    p: usize,
    c: usize,
    hw: (usize, usize),
    order: PatchOrder,
) -> Result<Tensor> {
    const OP: &str = "unpatchify";
    tokens.expect_rank(OP, 3, "B×S×(P·P·C)")?;
    divisible(OP, "patch size", hw, (p, p))?;
    let (hp, wp) = (hw.0 / p, hw.1 / p);
    let b = tokens.shape()[0];
    let want = [b, hp * wp, p * p * c];
    if tokens.shape() != want {
        return Err(TensorError::shape(
            OP,
            fmt_shape(&want),
            fmt_shape(tokens.shape()),
        ));
    }
    let (six, perm): (Vec<usize>, &[usize]) = match order {
        PatchOrder::ChannelFirst => (vec![b, hp, wp, c, p, p], &[0, 3, 1, 4, 2, 5]),
        PatchOrder::ChannelLast => (vec![b, hp, wp, p, p, c], &[0, 5, 1, 3, 2, 4]),
    };
    tokens
        .reshape(&six)?
        .permute(perm)?
        .reshape(&[b, c, hw.0, hw.1])
}

/// RepMLP partition: `[N, C, H, W]` → `[N·(H/h)·(W/w), C, h, w]`.
pub fn partition(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let [n, c, hh, ww] = nchw("partition", x)?;
    divisible("partition", "partition size", (hh, ww), (h, w))?;
    let (hp, wp) = (hh / h, ww / w);
    x.reshape(&[n, c, hp, h, wp, w])?
        .permute(&[0, 2, 4, 1, 3, 5])?
        .reshape(&[n * hp * wp, c, h, w])
}

/// Inverse of [`partition`]: `[N·Hp·Wp, C, h, w]` → `[N, C, Hp·h, Wp·w]`.
pub fn unpartition(x: &Tensor, n: usize, hp: usize, wp: usize) -> Result<Tensor> {
    const OP: &str = "unpartition";
    let [rows, c, h, w] = nchw(OP, x)?;
    if n.checked_mul(hp).and_then(|v| v.checked_mul(wp)) != Some(rows) {
        return Err(TensorError::shape(
            OP,
            format!("N·Hp·Wp = {n}·{hp}·{wp} partitions"),
            format!("{rows} (shape {})", fmt_shape(x.shape())),
        ));
    }
    x.reshape(&[n, hp, wp, c, h, w])?
        .permute(&[0, 3, 1, 4, 2, 5])?
        .reshape(&[n, c, hp * h, wp * w])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(shape: &[usize]) -> Tensor {
        // Non-contiguous: built as NHWC and viewed as NCHW.
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        Tensor::randn(&[n, h, w, c], 0.0, 1.0, 42)
            .unwrap()
            .permute(&[0, 3, 1, 2])
            .unwrap()
    }

    #[test]
    fn patchify_matches_index_math_in_both_orders() {
        let (b, c, h, w, p) = (2, 3, 8, 12, 4);
        let x = image(&[b, c, h, w]);
        for order in [PatchOrder::ChannelFirst, PatchOrder::ChannelLast] {
            let t = patchify(&x, p, order).unwrap();
            assert_eq!(t.shape(), &[b, (h / p) * (w / p), p * p * c]);
            for bi in 0..b {
                for ci in 0..c {
                    for y in 0..h {
                        for xx in 0..w {
                            let s = (y / p) * (w / p) + xx / p;
                            let (py, px) = (y % p, xx % p);
                            let f = match order {
                                PatchOrder::ChannelFirst => (ci * p + py) * p + px,
                                PatchOrder::ChannelLast => (py * p + px) * c + ci,
                            };
                            assert_eq!(
                                t.get(&[bi, s, f]).unwrap(),
                                x.get(&[bi, ci, y, xx]).unwrap()
                            );
                        }
                    }
                }
            }
            assert_eq!(unpatchify(&t, p, c, (h, w), order).unwrap(), x.contiguous());
        }
    }

    #[test]
    fn partition_matches_index_math_and_roundtrips() {
        let (n, c, hh, ww, h, w) = (2, 3, 6, 10, 3, 5);
        let x = image(&[n, c, hh, ww]);
        let p = partition(&x, h, w).unwrap();
        let (hp, wp) = (hh / h, ww / w);
        assert_eq!(p.shape(), &[n * hp * wp, c, h, w]);
        for ni in 0..n {
            for ci in 0..c {
                for y in 0..hh {
                    for xx in 0..ww {
                        let row = (ni * hp + y / h) * wp + xx / w;
                        assert_eq!(
                            p.get(&[row, ci, y % h, xx % w]).unwrap(),
                            x.get(&[ni, ci, y, xx]).unwrap()
                        );
                    }
                }
            }
        }
        assert_eq!(unpartition(&p, n, hp, wp).unwrap(), x.contiguous());
    }

    #[test]
    fn layout_errors_are_reported() {
        let x = Tensor::zeros(&[1, 3, 7, 8]).unwrap();
        let e = patchify(&x, 4, PatchOrder::ChannelFirst)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("patchify:") && e.contains("7×8"), "{e}");
        assert!(patchify(&x, 0, PatchOrder::ChannelFirst).is_err());
        assert!(
            patchify(
                &Tensor::zeros(&[3, 8, 8]).unwrap(),
                4,
                PatchOrder::ChannelLast
            )
            .is_err()
        );
        assert!(partition(&x, 7, 3).is_err());
        let p = Tensor::zeros(&[4, 3, 2, 2]).unwrap();
        assert!(
            unpartition(&p, 1, 2, 3)
                .unwrap_err()
                .to_string()
                .contains("1·2·3")
        );
        let t = Tensor::zeros(&[1, 4, 48]).unwrap();
        assert!(unpatchify(&t, 4, 3, (8, 12), PatchOrder::ChannelFirst).is_err());
        assert!(unpatchify(&t, 4, 3, (8, 8), PatchOrder::ChannelFirst).is_ok());
    }
}
