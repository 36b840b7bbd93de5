//! [`PackedB`]: a right operand packed once into the kernel's panel layout,
//! for products that reuse it, such as a layer's weight `Wᵀ` over many
//! inference calls ([`super::gemm_fresh_packed`]).
//!
//! Every product packs B into `kc × NR` panels before its tiles run. For a
//! weight that is the same work on every call: a batch-1 ResMLP-12 forward
//! spent 14.5% of its time there. A `PackedB` does it once, in the layout
//! the product would build (so the results are the same bits).
//!
//! ```
//! use allmlp_tensor_core::gemm::{FreshEpilogue, MatRef, PackedB, gemm_fresh, gemm_fresh_packed};
//! let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2×3
//! let w = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]; // W [2, 3]: B = Wᵀ
//! let wt = MatRef::row_major(&w, 2, 3)?.t();
//! let packed = PackedB::new(wt);
//! let a = MatRef::row_major(&x, 2, 3)?;
//! let y = gemm_fresh_packed(1.0, a, &packed, FreshEpilogue::default())?.c;
//! assert_eq!(y, [4.0, 5.0, 10.0, 11.0]);
//! assert_eq!(y, gemm_fresh(1.0, a, wt, FreshEpilogue::default())?.c);
//! # Ok::<(), allmlp_tensor_core::TensorError>(())
//! ```

use super::MatRef;
#[cfg(target_arch = "x86_64")]
use super::avx512::{Avx512, Panels};

/// A `k × n` right operand packed for the GEMM kernel of this CPU.
pub struct PackedB {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) store: Store,
}

/// How a [`PackedB`] holds its matrix.
pub(super) enum Store {
    /// Row-major copy (CPUs without the AVX-512 kernel, empty matrices).
    Plain(Vec<f32>),
    /// The AVX-512 kernel's panels.
    #[cfg(target_arch = "x86_64")]
    Panels(Panels),
}

impl PackedB {
    /// Packs `b` (any strides; a transposed weight `W.t()` is the usual one).
    pub fn new(b: MatRef<'_>) -> PackedB {
        let (rows, cols) = (b.rows, b.cols);
        #[cfg(target_arch = "x86_64")]
        if let Some(native) = Avx512::detect()
            && rows > 0
            && cols > 0
        {
            return PackedB {
                rows,
                cols,
                store: Store::Panels(Panels::new(native, b)),
            };
        }
        let plain = (0..rows)
            .flat_map(|i| (0..cols).map(move |j| (i, j)))
            .map(|(i, j)| b.at(i, j).expect("inside the matrix"))
            .collect();
        PackedB {
            rows,
            cols,
            store: Store::Plain(plain),
        }
    }

    /// `k`, the rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `n`, the columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.store {
            Store::Plain(_) => "row-major",
            #[cfg(target_arch = "x86_64")]
            Store::Panels(_) => "AVX-512 panels",
        };
        write!(f, "PackedB({}×{}, {kind})", self.rows, self.cols)
    }
}
