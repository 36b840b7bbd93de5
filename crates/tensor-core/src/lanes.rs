//! Lane masks for the AVX-512 loops (GEMM packing and tiles, im2col rows).

/// Mask of the first `n` lanes of a 16-lane vector (all 16 from `n ≥ 16`).
#[inline(always)]
pub(crate) fn first(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_count_the_first_lanes() {
        assert_eq!(super::first(0), 0);
        assert_eq!(super::first(3), 0b111);
        assert_eq!(super::first(15), 0x7fff);
        assert_eq!((super::first(16), super::first(40)), (0xffff, 0xffff));
    }
}
