//! Depth-wise convolution (`groups == C == O`): direct loops, one plane per task.
//!
//! Each output plane depends on one input plane and one `kh×kw` filter, so
//! im2col + GEMM would multiply `1×kk` by `kk×OHW` matrices: all overhead. The
//! loops below run over the valid output range of each tap, so the inner loop
//! has no bounds tests and vectorises for stride 1.

use rayon::prelude::*;

use super::{Geom, valid_range};
use crate::threads;

/// Forward. `x: [N, C, H, W]`, `w: [C, 1, kh, kw]`, `bias: [C]` → `y: [N, C, OH, OW]`.
pub(super) fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (kk, hw, ohw) = (g.kk(), g.hw(), g.ohw());
    threads::install(|| {
        y.par_chunks_mut(ohw).enumerate().for_each(|(plane, yp)| {
            let c = plane % g.c;
            let xp = &x[plane * hw..][..hw];
            yp.fill(bias.map_or(0.0, |b| b[c]));
            for ki in 0..g.kh {
                let (oh_lo, oh_hi) = valid_range(g.oh, g.h, ki, g.ph, g.sh);
                for kj in 0..g.kw {
                    let (ow_lo, ow_hi) = valid_range(g.ow, g.w, kj, g.pw, g.sw);
                    if ow_lo == ow_hi {
                        continue;
                    }
                    let wv = w[c * kk + ki * g.kw + kj];
                    let base = ow_lo * g.sw + kj - g.pw;
                    for oh in oh_lo..oh_hi {
                        let xr = &xp[(oh * g.sh + ki - g.ph) * g.w + base..];
                        let yr = &mut yp[oh * g.ow + ow_lo..oh * g.ow + ow_hi];
                        if g.sw == 1 {
                            for (v, &xv) in yr.iter_mut().zip(xr) {
                                *v += wv * xv;
                            }
                        } else {
                            for (j, v) in yr.iter_mut().enumerate() {
                                *v += wv * xr[j * g.sw];
                            }
                        }
                    }
                }
            }
        });
    });
}

/// Input gradient. `dy: [N, C, OH, OW]`, `w: [C, 1, kh, kw]` → `dx: [N, C, H, W]`.
pub(super) fn backward_input(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (kk, hw, ohw) = (g.kk(), g.hw(), g.ohw());
    threads::install(|| {
        dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
            let c = plane % g.c;
            let dyp = &dy[plane * ohw..][..ohw];
            dxp.fill(0.0);
            for ki in 0..g.kh {
                let (oh_lo, oh_hi) = valid_range(g.oh, g.h, ki, g.ph, g.sh);
                for kj in 0..g.kw {
                    let (ow_lo, ow_hi) = valid_range(g.ow, g.w, kj, g.pw, g.sw);
                    if ow_lo == ow_hi {
                        continue;
                    }
                    let wv = w[c * kk + ki * g.kw + kj];
                    let base = ow_lo * g.sw + kj - g.pw;
                    for oh in oh_lo..oh_hi {
                        let dr = &mut dxp[(oh * g.sh + ki - g.ph) * g.w + base..];
                        let sr = &dyp[oh * g.ow + ow_lo..oh * g.ow + ow_hi];
                        for (j, &d) in sr.iter().enumerate() {
                            dr[j * g.sw] += wv * d;
                        }
                    }
                }
            }
        });
    });
}

/// Weight gradient. `x: [N, C, H, W]`, `dy: [N, C, OH, OW]` → `dw: [C, 1, kh, kw]`.
///
/// One task per channel; each tap sums rows in f32 and the rows in f64, in a
/// fixed order (image, row).
pub(super) fn backward_weight(g: &Geom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (kk, hw, ohw) = (g.kk(), g.hw(), g.ohw());
    threads::install(|| {
        dw.par_chunks_mut(kk).enumerate().for_each(|(c, dwc)| {
            for ki in 0..g.kh {
                let (oh_lo, oh_hi) = valid_range(g.oh, g.h, ki, g.ph, g.sh);
                for kj in 0..g.kw {
                    let (ow_lo, ow_hi) = valid_range(g.ow, g.w, kj, g.pw, g.sw);
                    let mut acc = 0.0f64;
                    if ow_lo < ow_hi {
                        let base = ow_lo * g.sw + kj - g.pw;
                        for n in 0..g.n {
                            let xp = &x[(n * g.c + c) * hw..][..hw];
                            let dyp = &dy[(n * g.c + c) * ohw..][..ohw];
                            for oh in oh_lo..oh_hi {
                                let xr = &xp[(oh * g.sh + ki - g.ph) * g.w + base..];
                                let sr = &dyp[oh * g.ow + ow_lo..oh * g.ow + ow_hi];
                                let row: f32 = if g.sw == 1 {
                                    sr.iter().zip(xr).map(|(&d, &v)| d * v).sum()
                                } else {
                                    sr.iter().enumerate().map(|(j, &d)| d * xr[j * g.sw]).sum()
                                };
                                acc += row as f64;
                            }
                        }
                    }
                    dwc[ki * g.kw + kj] = acc as f32;
                }
            }
        });
    });
}
