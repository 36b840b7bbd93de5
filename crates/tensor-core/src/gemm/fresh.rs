//! Products into new buffers: `act(α·A·B + bias)` written straight into
//! freshly allocated memory, like `torch.empty` followed by `out=`, instead of
//! a zero-filled `vec![0.0; m·n]` that the product then overwrites.
//!
//! Zero-filling is a serial `memset` on the calling thread: in a Mixer-tiny
//! training step (batch 128) the outputs of the linear layers and their
//! gradients are 5% of the CPU time on one thread, and the other core waits
//! meanwhile on two. The AVX-512 kernel stores every element of C with β = 0
//! without reading it, and its epilogue writes every element of the extra
//! outputs, so it can write into uninitialised memory; elsewhere (the
//! portable backend, `k = 0`) the buffers are zero-filled and the product runs
//! as [`super::gemm_batched_with`] would, with the same values.
//!
//! ```
//! use allmlp_tensor_core::gemm::{Activation, Bias, FreshEpilogue, MatRef, gemm_fresh};
//! let x = [1.0, -2.0]; // 1×2
//! let wt = [1.0, 0.0, 0.0, 1.0]; // Wᵀ, 2×2
//! let epi = FreshEpilogue {
//!     bias: Bias::PerColumn(&[0.5, 0.5]),
//!     act: Activation::Relu,
//!     derivative: true,
//!     ..FreshEpilogue::default()
//! };
//! let out = gemm_fresh(1.0, MatRef::row_major(&x, 1, 2)?, MatRef::row_major(&wt, 2, 2)?, epi)?;
//! assert_eq!(out.c, [1.5, 0.0]);
//! assert_eq!(out.derivative, Some(vec![1.0, 0.0]));
//! assert_eq!(out.pre_activation, None);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

#[cfg(target_arch = "x86_64")]
use super::avx512::{Panels, Right};
use super::epilogue::{Activation, Bias, Epilogue};
use super::packed::{PackedB, Store};
use super::{Backend, Kernel, MatMut, MatRef, check_dims, dispatch, profile, run};
use super::{tail, work};
use crate::error::try_vec;
use crate::{Result, TensorError};

/// What a fresh product does before storing: the bias and activation of an
/// [`Epilogue`], and which of its extra outputs to return.
#[derive(Clone, Copy, Debug, Default)]
pub struct FreshEpilogue<'a> {
    /// The bias (shared by every matrix of a batch).
    pub bias: Bias<'a>,
    /// The activation, applied last.
    pub act: Activation,
    /// Also return the pre-activation `z` ([`Epilogue::pre_activation`]).
    pub pre_activation: bool,
    /// Also return the derivative `act′(z)` ([`Epilogue::derivative`]).
    pub derivative: bool,
    /// Multiply the result elementwise by this matrix after the activation,
    /// `C = act(α·A·B + bias) ⊙ M`; laid out like the output (`batch`
    /// row-major `m × n` matrices, one after the other). A backward pass
    /// `dZ = (dY·W) ⊙ act′(Z)` is then one product, without a separate
    /// pass over its result. Does not change the extra outputs.
    pub multiplier: Option<&'a [f32]>,
}

/// The outputs of a fresh product: `batch` row-major `m × n` matrices each,
/// one after the other.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fresh {
    /// `act(α·A·B + bias)`.
    pub c: Vec<f32>,
    /// The pre-activation, when asked for.
    pub pre_activation: Option<Vec<f32>>,
    /// The activation's derivative at the pre-activation, when asked for.
    pub derivative: Option<Vec<f32>>,
}

/// Raw pointers to a product's outputs (`pre`, `deriv` null when not
/// wanted), for the kernel that writes them without reading, and to the
/// multiplier laid out like them (read only; null when none).
#[derive(Clone, Copy)]
pub(crate) struct RawOut {
    pub c: *mut f32,
    pub pre: *mut f32,
    pub deriv: *mut f32,
    pub mul: *const f32,
}

// SAFETY: a `RawOut` is handed to exactly one task, which alone writes the
// memory it points to (disjoint per batch entry, see `fresh`).
unsafe impl Send for RawOut {}

impl RawOut {
    /// The outputs `offset` elements further on.
    ///
    /// # Safety
    /// `offset` stays inside every non-null output's allocation.
    unsafe fn add(self, offset: usize) -> RawOut {
        let shift = |p: *mut f32| {
            if p.is_null() {
                p
            } else {
                // SAFETY: in bounds, as the caller promises.
                unsafe { p.add(offset) }
            }
        };
        RawOut {
            c: shift(self.c),
            pre: shift(self.pre),
            deriv: shift(self.deriv),
            mul: shift(self.mul.cast_mut()).cast_const(),
        }
    }
}

/// `act(α·A·B + bias)` as a new row-major `m × n` matrix (with the extra
/// outputs asked for), on the kernel thread pool.
pub fn gemm_fresh(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    epilogue: FreshEpilogue<'_>,
) -> Result<Fresh> {
    gemm_batched_fresh_with(Backend::Auto, 1, alpha, a, 0, b, 0, epilogue)
}

/// `C[i] = act(α·A[i]·B[i] + bias)` for `i < batch` as new row-major
/// `m × n` matrices, one after the other; A and B as in
/// [`super::gemm_batched`] (a stride of 0 shares one matrix).
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched_fresh_with(
    backend: Backend,
    batch: usize,
    alpha: f32,
    a: MatRef<'_>,
    a_stride: usize,
    b: MatRef<'_>,
    b_stride: usize,
    epilogue: FreshEpilogue<'_>,
) -> Result<Fresh> {
    let (a, b) = ((a, a_stride), Operand::Matrix(b, b_stride));
    fresh("gemm_fresh", backend, batch, alpha, a, b, epilogue)
}

/// `act(α·A·B + bias)` as a new row-major `m × n` matrix, B packed in
/// advance ([`PackedB`]): [`gemm_fresh`] without packing B again.
pub fn gemm_fresh_packed(
    alpha: f32,
    a: MatRef<'_>,
    b: &PackedB,
    epilogue: FreshEpilogue<'_>,
) -> Result<Fresh> {
    let b = match &b.store {
        Store::Plain(v) => Operand::Matrix(MatRef::row_major(v, b.rows, b.cols)?, 0),
        #[cfg(target_arch = "x86_64")]
        Store::Panels(p) => Operand::Panels(p),
    };
    fresh(
        "gemm_fresh_packed",
        Backend::Auto,
        1,
        alpha,
        (a, 0),
        b,
        epilogue,
    )
}

/// The right operand of a fresh product.
#[derive(Clone, Copy)]
enum Operand<'a> {
    /// A matrix and its batch stride.
    Matrix(MatRef<'a>, usize),
    /// Packed for the AVX-512 kernel, shared by the batch.
    #[cfg(target_arch = "x86_64")]
    Panels(&'a Panels),
}

impl Operand<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            Operand::Matrix(b, _) => (b.rows, b.cols),
            #[cfg(target_arch = "x86_64")]
            Operand::Panels(p) => p.dims(),
        }
    }
}

fn fresh(
    op: &'static str,
    backend: Backend,
    batch: usize,
    alpha: f32,
    (a, a_stride): (MatRef<'_>, usize),
    b: Operand<'_>,
    epilogue: FreshEpilogue<'_>,
) -> Result<Fresh> {
    let (m, k) = (a.rows, a.cols);
    let (kb, n) = b.dims();
    check_dims(op, &a, (kb, n), (m, n))?;
    let len = batch
        .checked_mul(m)
        .and_then(|x| x.checked_mul(n))
        .ok_or_else(|| TensorError::Overflow {
            op,
            what: format!("{batch} outputs of {m}×{n}"),
        })?;
    let kernel = Kernel::select(op, backend)?;
    if batch > 0 {
        a.check_batch(op, "A", batch, a_stride)?;
        if let Operand::Matrix(b, b_stride) = b {
            b.check_batch(op, "B", batch, b_stride)?;
        }
    }
    let inputs = Epilogue {
        bias: epilogue.bias,
        act: epilogue.act,
        ..Epilogue::default()
    };
    inputs.check(op, m, n, len)?;
    if let Some(mul) = epilogue.multiplier
        && mul.len() != len
    {
        return Err(TensorError::shape(
            op,
            format!(
                "a multiplier of {len} elements ({batch} × {m} × {n}, laid out like the output)"
            ),
            format!("{} elements", mul.len()),
        ));
    }
    #[cfg(target_arch = "x86_64")]
    if let Kernel::Avx512(native) = kernel
        && len > 0
        && k > 0
    {
        let b_strides = match b {
            Operand::Matrix(b, _) => (b.rs, b.cs),
            Operand::Panels(_) => (n, 1),
        };
        let _timer = profile::Timer::start(
            op,
            batch,
            (m, k, n),
            profile::Layout::of((a.rs, a.cs), b_strides),
            epilogue.act,
        );
        let shape = [batch, m, n];
        let mut c = try_vec(op, &shape, len)?;
        let mut pre = epilogue
            .pre_activation
            .then(|| try_vec(op, &shape, len))
            .transpose()?;
        let mut deriv = epilogue
            .derivative
            .then(|| try_vec(op, &shape, len))
            .transpose()?;
        let ptr =
            |v: &mut Option<Vec<f32>>| v.as_mut().map_or(std::ptr::null_mut(), Vec::as_mut_ptr);
        let out = RawOut {
            c: c.as_mut_ptr(),
            pre: ptr(&mut pre),
            deriv: ptr(&mut deriv),
            mul: epilogue
                .multiplier
                .map_or(std::ptr::null(), <[f32]>::as_ptr),
        };
        let items: Vec<_> = (0..batch)
            .map(|i| {
                let ai = MatRef::new_unchecked(tail(a.data, i * a_stride), m, k, a.rs, a.cs);
                let bi = match b {
                    Operand::Matrix(b, s) => {
                        Right::Matrix(MatRef::new_unchecked(tail(b.data, i * s), k, n, b.rs, b.cs))
                    }
                    Operand::Panels(p) => Right::Packed(p),
                };
                // SAFETY: `i·m·n < len`, inside every output's capacity.
                (ai, bi, unsafe { out.add(i * m * n) })
            })
            .collect();
        let (bias, act) = (epilogue.bias, epilogue.act);
        dispatch(items, work(batch, m, k, n), |(ai, bi, o), inside| {
            // SAFETY: A and B validated for the batch, `k ≥ 1`, the bias and
            // multiplier checked; each item writes its own `m·n` floats of
            // the outputs' capacity, which nothing else touches until they
            // are returned (and reads the multiplier's at the same offsets).
            unsafe { native.gemm_into(alpha, (ai, bi), o, bias, act, inside) }
        });
        let set = |v: &mut Vec<f32>| {
            // SAFETY: the kernel wrote every one of the `len` floats (C's
            // tiles are stored whole with β = 0, the extra outputs by the
            // epilogue of every tile: `Avx512::gemm_into`).
            unsafe { v.set_len(len) }
        };
        set(&mut c);
        pre.iter_mut().for_each(set);
        deriv.iter_mut().for_each(set);
        return Ok(Fresh {
            c,
            pre_activation: pre,
            derivative: deriv,
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernel;
    let (b, b_stride) = match b {
        Operand::Matrix(b, b_stride) => (b, b_stride),
        // Panels (`k, n ≥ 1`) exist only where the AVX-512 kernel runs
        // (`PackedB::new`): here the output is empty.
        #[cfg(target_arch = "x86_64")]
        Operand::Panels(_) => {
            return Ok(Fresh {
                c: Vec::new(),
                pre_activation: epilogue.pre_activation.then(Vec::new),
                derivative: epilogue.derivative.then(Vec::new),
            });
        }
    };
    // Zero-filled buffers through the general entry point.
    let zeros = || -> Result<Vec<f32>> {
        let mut v = try_vec(op, &[batch, m, n], len)?;
        v.resize(len, 0.0);
        Ok(v)
    };
    let mut c = zeros()?;
    let mut pre = epilogue.pre_activation.then(zeros).transpose()?;
    let mut deriv = epilogue.derivative.then(zeros).transpose()?;
    if batch > 0 {
        let epi = Epilogue {
            bias: epilogue.bias,
            act: epilogue.act,
            pre_activation: pre.as_deref_mut(),
            derivative: deriv.as_deref_mut(),
        };
        let c_mat = MatMut::row_major(&mut c, m, n)?;
        run(
            op,
            backend,
            batch,
            alpha,
            (a, a_stride),
            (b, b_stride),
            0.0,
            (c_mat, m * n),
            epi,
        )?;
        if let Some(mul) = epilogue.multiplier {
            c.iter_mut().zip(mul).for_each(|(c, &m)| *c *= m);
        }
    }
    Ok(Fresh {
        c,
        pre_activation: pre,
        derivative: deriv,
    })
}
