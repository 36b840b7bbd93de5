//! GEMM epilogues: `C = act(α·A·B + β·C + bias)`, applied where each block of
//! C is stored, while it is still in cache, instead of in separate passes over
//! the output (the Linear layer's bias broadcast, then its activation).
//!
//! The AVX-512 kernel adds the bias to the accumulators in registers when it
//! stores a tile after the first k block (exactly where a bias pre-filled into
//! C with β = 1 would enter, so `Bias::PerColumn` gives the same bits as that
//! formulation), and applies the activation to the tile (in L1) after its last
//! k block. The portable path applies both to each block of 64 rows right after
//! matrixmultiply has computed it (in L2). The activations are the functions of
//! [`crate::elementwise`], so `act` here equals `Tensor::gelu` & co. bit for bit.
//!
//! For training, the epilogue can also store what the activation's backward
//! needs: the pre-activation `z`, or directly the derivative `act′(z)`, which
//! for GELU costs one more `exp` here (the `erf` is shared with the forward)
//! and turns the backward's erf-and-exp pass into a multiplication.

use crate::elementwise::{
    Isa, gelu, gelu_grad, gelu_tanh, gelu_tanh_grad, gelu_tanh_with_grad, gelu_with_grad, isa, relu,
};
use std::mem::MaybeUninit;

use crate::{Result, TensorError};

use super::MatMut;

/// The activation an [`Epilogue`] applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// None: `act(z) = z`.
    #[default]
    Identity,
    /// Exact GELU, [`crate::elementwise::gelu`].
    Gelu,
    /// Tanh-approximate GELU, [`crate::elementwise::gelu_tanh`].
    GeluTanh,
    /// ReLU, [`crate::elementwise::relu`].
    Relu,
}

impl Activation {
    /// The activation of one value.
    #[inline(always)]
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Identity => z,
            Activation::Gelu => gelu(z),
            Activation::GeluTanh => gelu_tanh(z),
            Activation::Relu => relu(z),
        }
    }

    /// The derivative at `z`, as the elementwise backward kernels compute it
    /// ([`crate::elementwise::gelu_grad`] & co.; ReLU's is 0 at `z ≤ 0`).
    #[inline(always)]
    pub fn derivative(self, z: f32) -> f32 {
        match self {
            Activation::Identity => 1.0,
            Activation::Gelu => gelu_grad(z),
            Activation::GeluTanh => gelu_tanh_grad(z),
            Activation::Relu => relu_grad(z),
        }
    }
}

#[inline(always)]
fn relu_grad(z: f32) -> f32 {
    if z > 0.0 { 1.0 } else { 0.0 }
}

/// A bias added to `α·A·B + β·C` before the activation.
#[derive(Clone, Copy, Debug, Default)]
pub enum Bias<'a> {
    /// No bias.
    #[default]
    None,
    /// `bias[j]` added to every element of column `j` (length `n`): the
    /// Linear layer's `y = x·Wᵀ + b`.
    PerColumn(&'a [f32]),
    /// `bias[i]` added to every element of row `i` (length `m`): a left
    /// multiplication `Y = W·X + b·1ᵀ` (Mixer's token mixing).
    PerRow(&'a [f32]),
}

/// What a GEMM does with `α·A·B + β·C` before storing it into C: add a bias,
/// optionally keep that pre-activation value `z` or the activation's
/// derivative there, then apply the activation.
///
/// `Epilogue::default()` does nothing (a plain GEMM). In a batched product the
/// bias is shared by every matrix of the batch.
///
/// ```
/// use allmlp_tensor_core::gemm::{Activation, Bias, Epilogue, MatMut, MatRef, gemm_fused};
/// let x = [1.0, -2.0]; // 1×2
/// let w = [1.0, 0.0, 0.0, 1.0]; // Wᵀ, 2×2
/// let (mut y, mut z, mut d) = ([0.0; 2], [0.0; 2], [0.0; 2]);
/// let epi = Epilogue {
///     bias: Bias::PerColumn(&[0.5, 0.5]),
///     act: Activation::Relu,
///     pre_activation: Some(&mut z),
///     derivative: Some(&mut d),
/// };
/// gemm_fused(1.0, MatRef::row_major(&x, 1, 2)?, MatRef::row_major(&w, 2, 2)?, 0.0, MatMut::row_major(&mut y, 1, 2)?, epi)?;
/// assert_eq!((y, z, d), ([1.5, 0.0], [1.5, -1.5], [1.0, 0.0]));
/// # Ok::<(), allmlp_tensor_core::TensorError>(())
/// ```
#[derive(Debug, Default)]
pub struct Epilogue<'a> {
    /// The bias.
    pub bias: Bias<'a>,
    /// The activation, applied last.
    pub act: Activation,
    /// Where to also store the pre-activation `z = α·A·B + β·C + bias`. Laid
    /// out exactly like C: element `(i, j)` of matrix `b` of the batch at the
    /// same offset as in C's slice, which it must be at least as long as C's
    /// extent.
    pub pre_activation: Option<&'a mut [f32]>,
    /// Where to also store the derivative `act′(z)` ([`Activation::derivative`]),
    /// laid out like C: the backward of the activation is then
    /// `dz = dy ⊙ act′(z)`, one multiplication.
    pub derivative: Option<&'a mut [f32]>,
}

impl<'a> Epilogue<'a> {
    /// True when the epilogue changes nothing (a plain GEMM).
    pub(crate) fn is_noop(&self) -> bool {
        matches!(self.bias, Bias::None) && !self.has_finish()
    }

    /// True when something happens after the last k block: an activation or
    /// an extra output.
    pub(crate) fn has_finish(&self) -> bool {
        self.act != Activation::Identity
            || self.pre_activation.is_some()
            || self.derivative.is_some()
    }

    /// Checks the bias length against the `m × n` output and the extra
    /// outputs against `extent`, the elements C's batch reaches.
    pub(crate) fn check(&self, op: &'static str, m: usize, n: usize, extent: usize) -> Result<()> {
        let (len, want, what) = match self.bias {
            Bias::None => (0, 0, ""),
            Bias::PerColumn(b) => (b.len(), n, "per-column bias of n"),
            Bias::PerRow(b) => (b.len(), m, "per-row bias of m"),
        };
        if len != want {
            return Err(TensorError::shape(
                op,
                format!("a {what} = {want} elements (C is {m}×{n})"),
                format!("{len} elements"),
            ));
        }
        for out in [&self.pre_activation, &self.derivative]
            .into_iter()
            .flatten()
        {
            if out.len() < extent {
                return Err(TensorError::BufferTooShort {
                    op,
                    needed: extent,
                    len: out.len(),
                });
            }
        }
        Ok(())
    }

    /// The epilogue of the sub-block of C starting at row `r0` and at offset
    /// `offset` of C's slice (the extra outputs are cut at the same offset, a
    /// per-row bias at `r0`).
    pub(crate) fn sub(&mut self, r0: usize, offset: usize) -> Epilogue<'_> {
        Epilogue {
            bias: match self.bias {
                Bias::PerRow(b) => Bias::PerRow(b.get(r0..).unwrap_or(&[])),
                other => other,
            },
            act: self.act,
            pre_activation: cut(&mut self.pre_activation, offset),
            derivative: cut(&mut self.derivative, offset),
        }
    }

    /// Splits the epilogue of a batch into one per matrix (`stride` elements
    /// apart, each reaching `extent` elements).
    pub(crate) fn split(self, batch: usize, stride: usize, extent: usize) -> Vec<Epilogue<'a>> {
        let Epilogue {
            bias,
            act,
            pre_activation,
            derivative,
        } = self;
        let pres = chunks(pre_activation, batch, stride, extent);
        let derivs = chunks(derivative, batch, stride, extent);
        pres.into_iter()
            .zip(derivs)
            .map(|(pre_activation, derivative)| Epilogue {
                bias,
                act,
                pre_activation,
                derivative,
            })
            .collect()
    }
}

/// An optional output from `offset` on.
fn cut<'s>(out: &'s mut Option<&mut [f32]>, offset: usize) -> Option<&'s mut [f32]> {
    out.as_deref_mut()
        .map(|p| p.get_mut(offset..).unwrap_or(&mut []))
}

/// `batch` pieces of an optional output, `stride` elements apart and at most
/// `extent` long (all `None` without an output).
fn chunks(
    out: Option<&mut [f32]>,
    batch: usize,
    stride: usize,
    extent: usize,
) -> Vec<Option<&mut [f32]>> {
    match out {
        None => (0..batch).map(|_| None).collect(),
        Some(p) => p
            .chunks_mut(stride.max(1))
            .take(batch)
            .map(|ch| {
                let len = extent.min(ch.len());
                Some(&mut ch[..len])
            })
            .collect(),
    }
}

/// The bias as one row of C sees it.
#[derive(Clone, Copy)]
pub(crate) enum RowBias<'a> {
    None,
    /// `bias[j]` for element `j` of the row.
    Vector(&'a [f32]),
    /// One value for the whole row.
    Scalar(f32),
}

/// The extra outputs of one row (or tile row): pre-activation and derivative,
/// each as long as the row when present. Write-only slots: they may be
/// uninitialised memory (a fresh product's, [`super::gemm_fresh`]), and every
/// slot is written.
pub(crate) struct Extra<'a> {
    pub pre: Option<&'a mut [MaybeUninit<f32>]>,
    pub deriv: Option<&'a mut [MaybeUninit<f32>]>,
}

/// An initialised slice as write-only slots for [`Extra`].
pub(crate) fn slots(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; `Extra`'s slots are only
    // ever written, with initialised values, so `s` stays initialised.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `c[j] = act(c[j] + bias_j)` on a contiguous row, storing `c[j] + bias_j`
/// into `pre[j]` and its derivative into `deriv[j]` first when wanted.
pub(crate) fn finish_row(act: Activation, c: &mut [f32], extra: Extra, bias: RowBias) {
    match isa() {
        // SAFETY: `isa()` detected AVX-512F and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { finish_avx512(act, c, extra, bias) },
        // SAFETY: `isa()` detected AVX2 and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { finish_avx2(act, c, extra, bias) },
        _ => finish_body(act, c, extra, bias),
    }
}

/// [`finish_row`] on the `rows` rows of a full tile of the AVX-512 GEMM:
/// `W` contiguous elements each, `rs` apart, in one call (its constants set
/// up once, each row's loop exactly `W / 16` vectors).
///
/// # Safety
/// The CPU supports AVX-512F, AVX-512VL/DQ/BW and FMA. For `i < rows`,
/// `c + i·rs` is valid for reads and writes of `W` floats, and so are
/// `pre + i·rs` and `deriv + i·rs` for writes unless null; none of these
/// rows overlap or are accessed by anyone else during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
pub(crate) unsafe fn finish_tile_avx512<const W: usize>(
    act: Activation,
    tile: (*mut f32, usize, usize),
    (pre, deriv): (*mut f32, *mut f32),
) {
    // SAFETY: forwarded contract.
    unsafe {
        match act {
            Activation::Identity => tile_rows::<W>(tile, (pre, deriv), |z| z, |z| (z, 1.0)),
            Activation::Gelu => tile_rows::<W>(tile, (pre, deriv), gelu, gelu_with_grad),
            Activation::GeluTanh => {
                tile_rows::<W>(tile, (pre, deriv), gelu_tanh, gelu_tanh_with_grad)
            }
            Activation::Relu => {
                let fd = |z| (relu(z), relu_grad(z));
                tile_rows::<W>(tile, (pre, deriv), relu, fd)
            }
        }
    }
}

/// The loops of [`finish_tile_avx512`]: one per combination of outputs, as
/// [`activate`]'s, over fixed-length rows.
///
/// # Safety
/// As for [`finish_tile_avx512`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_rows<const W: usize>(
    (c, rs, rows): (*mut f32, usize, usize),
    (pre, deriv): (*mut f32, *mut f32),
    f: impl Fn(f32) -> f32,
    fd: impl Fn(f32) -> (f32, f32),
) {
    // SAFETY: row `i < rows` of C holds `W` floats, stored by the kernel
    // just before, ours alone (the caller's contract).
    let row = |i: usize| unsafe { &mut *c.add(i * rs).cast::<[f32; W]>() };
    // SAFETY: row `i < rows` of a non-null extra output holds `W` slots, ours
    // alone; they may be uninitialised (a fresh product's), so only written.
    let slots =
        |p: *mut f32, i: usize| unsafe { &mut *p.add(i * rs).cast::<[MaybeUninit<f32>; W]>() };
    for i in 0..rows {
        let y = row(i);
        match (pre.is_null(), deriv.is_null()) {
            (true, true) => {
                for x in y.iter_mut() {
                    *x = f(*x);
                }
            }
            (false, true) => {
                let p = slots(pre, i);
                for j in 0..W {
                    p[j] = MaybeUninit::new(y[j]);
                    y[j] = f(y[j]);
                }
            }
            (true, false) => {
                let d = slots(deriv, i);
                for j in 0..W {
                    let (v, g) = fd(y[j]);
                    (y[j], d[j]) = (v, MaybeUninit::new(g));
                }
            }
            (false, false) => {
                let (p, d) = (slots(pre, i), slots(deriv, i));
                for j in 0..W {
                    p[j] = MaybeUninit::new(y[j]);
                    let (v, g) = fd(y[j]);
                    (y[j], d[j]) = (v, MaybeUninit::new(g));
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
fn finish_avx512(act: Activation, c: &mut [f32], extra: Extra, bias: RowBias) {
    finish_body(act, c, extra, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn finish_avx2(act: Activation, c: &mut [f32], extra: Extra, bias: RowBias) {
    finish_body(act, c, extra, bias)
}

/// The loops, inlined into each `target_feature` copy so the compiler
/// vectorizes the branch-free activations for that instruction set. Plain
/// index loops over slices cut to one length (no bounds checks): iterator
/// adapters' `fold` may be left out of line, compiled without the features.
#[inline(always)]
fn finish_body(act: Activation, c: &mut [f32], extra: Extra, bias: RowBias) {
    let n = c.len();
    match bias {
        RowBias::None => {}
        RowBias::Scalar(b) => {
            for x in c.iter_mut() {
                *x += b;
            }
        }
        RowBias::Vector(b) => {
            let b = &b[..n];
            for i in 0..n {
                c[i] += b[i];
            }
        }
    }
    match act {
        Activation::Identity => activate(c, extra, |z| z, |z| (z, 1.0)),
        Activation::Gelu => activate(c, extra, gelu, gelu_with_grad),
        Activation::GeluTanh => activate(c, extra, gelu_tanh, gelu_tanh_with_grad),
        Activation::Relu => activate(c, extra, relu, |z| (relu(z), relu_grad(z))),
    }
}

/// One loop per combination of outputs, each branch-free so it vectorizes;
/// `fd` gives the activation and its derivative together (sharing GELU's
/// `erf`, tanh-GELU's `exp`).
#[inline(always)]
fn activate(c: &mut [f32], extra: Extra, f: impl Fn(f32) -> f32, fd: impl Fn(f32) -> (f32, f32)) {
    let n = c.len();
    match (extra.pre, extra.deriv) {
        (None, None) => {
            for x in c.iter_mut() {
                *x = f(*x);
            }
        }
        (Some(p), None) => {
            let p = &mut p[..n];
            for i in 0..n {
                let z = c[i];
                p[i] = MaybeUninit::new(z);
                c[i] = f(z);
            }
        }
        (None, Some(d)) => {
            let d = &mut d[..n];
            for i in 0..n {
                let (y, g) = fd(c[i]);
                (c[i], d[i]) = (y, MaybeUninit::new(g));
            }
        }
        (Some(p), Some(d)) => {
            let (p, d) = (&mut p[..n], &mut d[..n]);
            for i in 0..n {
                p[i] = MaybeUninit::new(c[i]);
                let (y, g) = fd(c[i]);
                (c[i], d[i]) = (y, MaybeUninit::new(g));
            }
        }
    }
}

/// Applies the whole epilogue to C as it stands (after the product was
/// stored without it): the portable path, and `k = 0`.
pub(crate) fn apply(c: MatMut<'_>, mut epi: Epilogue<'_>) {
    let (m, n, rs, cs) = (c.rows, c.cols, c.rs, c.cs);
    if m == 0 || n == 0 || epi.is_noop() {
        return;
    }
    let row_bias = |i: usize| match epi.bias {
        Bias::None => RowBias::None,
        Bias::PerColumn(b) => RowBias::Vector(b),
        Bias::PerRow(b) => RowBias::Scalar(b[i]),
    };
    if cs == 1 {
        for i in 0..m {
            let bias = row_bias(i);
            let row = &mut c.data[i * rs..i * rs + n];
            let extra = Extra {
                pre: epi
                    .pre_activation
                    .as_deref_mut()
                    .map(|p| slots(&mut p[i * rs..i * rs + n])),
                deriv: epi
                    .derivative
                    .as_deref_mut()
                    .map(|d| slots(&mut d[i * rs..i * rs + n])),
            };
            finish_row(epi.act, row, extra, bias);
        }
        return;
    }
    for i in 0..m {
        for j in 0..n {
            let at = i * rs + j * cs;
            let z = match epi.bias {
                Bias::None => c.data[at],
                Bias::PerColumn(b) => c.data[at] + b[j],
                Bias::PerRow(b) => c.data[at] + b[i],
            };
            if let Some(p) = epi.pre_activation.as_deref_mut() {
                p[at] = z;
            }
            if let Some(d) = epi.derivative.as_deref_mut() {
                d[at] = epi.act.derivative(z);
            }
            c.data[at] = epi.act.apply(z);
        }
    }
}
