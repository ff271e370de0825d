//! The CPU's key/value cache: per layer, keys and values of every position in the cache type's
//! layout ([`KvType`]): f16 bit patterns (llama.cpp's default cache), or q8_0 blocks quantized as
//! llama.cpp stores a `--cache-type-k/-v q8_0` cache (a 32-value block: f16 scale `amax / 127`,
//! 32 i8). A position's row is `dim` values (keys `n_head_kv * head_dim`); with q8_0 every head is
//! whole blocks ([`KvShape::check_heads`]), so a block never spans two heads.

use std::ops::Range;

use crate::backend::{KvShape, KvType, KV_BLOCK};
use crate::error::{Error, Result};
use crate::quant::scalar::dequantize_row_q8_0;
use crate::quant::{f32_to_f16, BlockQ8_0};

use super::{ops, widen_f16};

/// `x` as q8_0 blocks the way llama.cpp's CPU stores a q8_0 cache and quantizes the query for it
/// (its x86 `quantize_row_q8_0`, the build its goldens come from): `d = amax / 127` stored as f16,
/// quants `round_half_even(x * (127 / amax))`. (The reference `quantize_row_q8_0_ref` multiplies
/// by `1 / d` and rounds halves away from zero: one quant step apart now and then.)
pub fn quantize_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(KV_BLOCK).zip(y) {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        b.d = f32_to_f16(amax / 127.0);
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round_ties_even() as i8;
        }
    }
}

/// The values of one layer's keys (or values), `[n_ctx, dim]`.
pub enum KvRows {
    F16(Vec<u16>),
    Q8_0(Vec<BlockQ8_0>),
}

/// A vector of `len` default elements, or `None` where the memory is not there.
fn try_zeros<T: Clone + Default>(len: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, T::default());
    Some(v)
}

impl KvRows {
    /// `len` values (a multiple of [`KV_BLOCK`] for q8_0), zero; `None` if they cannot be allocated.
    fn zeros(ty: KvType, len: usize) -> Option<KvRows> {
        Some(match ty {
            KvType::F16 => KvRows::F16(try_zeros(len)?),
            KvType::Q8_0 => KvRows::Q8_0(try_zeros(len / KV_BLOCK)?),
        })
    }

    /// Store the rows of `dim` values `x` at values `at..at + x.len()` (f16, or q8_0 blocks: whole
    /// blocks), runs of rows on the pool's threads when there are many (a prompt's).
    pub fn store_rows(&mut self, threads: usize, at: usize, x: &[f32], dim: usize) -> Result<()> {
        let len = match self {
            KvRows::F16(h) => h.len(),
            KvRows::Q8_0(b) => b.len() * KV_BLOCK,
        };
        let end = at.checked_add(x.len()).filter(|&e| e <= len && dim > 0 && x.len().is_multiple_of(dim));
        let Some(end) = end else {
            return Err(Error::internal(format!("{} cache values at {at} in rows of {dim}", x.len())));
        };
        match self {
            KvRows::F16(h) => super::for_row_runs_of(threads, &mut h[at..end], dim, super::MIN_VALUES_PER_TASK, &|r0, rows| {
                for (d, s) in rows.iter_mut().zip(&x[r0 * dim..]) {
                    *d = ops::to_f16_bits(*s);
                }
            }),
            KvRows::Q8_0(b) => {
                if !dim.is_multiple_of(KV_BLOCK) || !at.is_multiple_of(KV_BLOCK) {
                    return Err(Error::internal(format!("q8_0 cache rows of {dim} values at {at}")));
                }
                let bd = dim / KV_BLOCK;
                super::for_row_runs_of(threads, &mut b[at / KV_BLOCK..end / KV_BLOCK], bd, super::MIN_VALUES_PER_TASK / KV_BLOCK, &|r0, rows| {
                    quantize_q8_0(&x[r0 * dim..(r0 * bd + rows.len()) * KV_BLOCK], rows)
                })
            }
        }
    }

    /// Values `r` widened to f32, appended to `out` (exact for f16; `d * q` for q8_0).
    pub fn widen(&self, r: Range<usize>, out: &mut Vec<f32>) {
        let start = out.len();
        out.resize(start + r.len(), 0.0);
        self.widen_into(r, &mut out[start..]);
    }

    /// Values `r` widened to f32 into `out` (`r.len()` values; whole blocks for q8_0).
    pub fn widen_into(&self, r: Range<usize>, out: &mut [f32]) {
        match self {
            KvRows::F16(h) => widen_f16(&h[r], out),
            KvRows::Q8_0(b) => dequantize_row_q8_0(&b[r.start / KV_BLOCK..r.end / KV_BLOCK], out),
        }
    }

    /// The f16 bit patterns (`None` for a q8_0 cache).
    pub fn f16(&self) -> Option<&[u16]> {
        match self {
            KvRows::F16(h) => Some(h),
            KvRows::Q8_0(_) => None,
        }
    }

    /// The q8_0 blocks (`None` for an f16 cache).
    pub fn blocks(&self) -> Option<&[BlockQ8_0]> {
        match self {
            KvRows::Q8_0(b) => Some(b),
            KvRows::F16(_) => None,
        }
    }

    /// Values `src` copied to start at value `dst` (whole blocks for q8_0).
    fn copy_within(&mut self, src: Range<usize>, dst: usize) {
        match self {
            KvRows::F16(h) => h.copy_within(src, dst),
            KvRows::Q8_0(b) => b.copy_within(src.start / KV_BLOCK..src.end / KV_BLOCK, dst / KV_BLOCK),
        }
    }

    /// The first `n` values in the portable layout ([`KvType::row_bytes`]), appended to `out`.
    fn bytes(&self, n: usize, out: &mut Vec<u8>) {
        match self {
            KvRows::F16(h) => h[..n].iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            KvRows::Q8_0(b) => {
                for b in &b[..n / KV_BLOCK] {
                    out.extend_from_slice(&b.d.to_le_bytes());
                    out.extend(b.qs.iter().map(|&q| q as u8));
                }
            }
        }
    }

    /// The first values from `bytes` in the portable layout (its length checked by the caller).
    fn write_bytes(&mut self, bytes: &[u8]) {
        match self {
            KvRows::F16(h) => {
                for (d, s) in h.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = u16::from_le_bytes([s[0], s[1]]);
                }
            }
            KvRows::Q8_0(b) => {
                for (d, s) in b.iter_mut().zip(bytes.chunks_exact(2 + KV_BLOCK)) {
                    d.d = u16::from_le_bytes([s[0], s[1]]);
                    for (q, &x) in d.qs.iter_mut().zip(&s[2..]) {
                        *q = x as i8;
                    }
                }
            }
        }
    }
}

/// Keys and values of every layer: `k[layer]` holds `[n_ctx, k_dim]` values.
pub struct CpuKv {
    pub(super) k: Vec<KvRows>,
    pub(super) v: Vec<KvRows>,
    pub(super) k_dim: usize,
    pub(super) v_dim: usize,
    pub(super) n_ctx: usize,
    pub(super) ty: KvType,
}

impl CpuKv {
    /// Allocated fallibly: a cache that does not fit is an `INVALID_ARGUMENT` (use a smaller
    /// context), never an abort.
    pub fn new(shape: KvShape) -> Result<CpuKv> {
        let KvShape { n_layer, k_dim, v_dim, n_ctx, ty } = shape;
        let too_big = || {
            Error::invalid_argument(format!(
                "cannot allocate the key/value cache for a context of {n_ctx} tokens ({} MiB); use a smaller context length",
                shape.bytes().map_or("more than 2^64 bytes".into(), |b| (b >> 20).to_string())
            ))
        };
        shape.check_rows()?;
        let rows = |dim: usize| n_ctx.checked_mul(dim).and_then(|len| KvRows::zeros(ty, len)).ok_or_else(too_big);
        let (mut k, mut v) = (Vec::new(), Vec::new());
        k.try_reserve_exact(n_layer).map_err(|_| too_big())?;
        v.try_reserve_exact(n_layer).map_err(|_| too_big())?;
        for _ in 0..n_layer {
            k.push(rows(k_dim)?);
            v.push(rows(v_dim)?);
        }
        Ok(CpuKv { k, v, k_dim, v_dim, n_ctx, ty })
    }

    pub fn shape(&self) -> KvShape {
        KvShape { n_layer: self.k.len(), k_dim: self.k_dim, v_dim: self.v_dim, n_ctx: self.n_ctx, ty: self.ty }
    }

    /// Keys then values of positions `0..n` of `layer` in the portable layout (`k_bytes` +
    /// `v_bytes` of [`crate::backend::kv_span`]).
    pub fn read(&self, layer: usize, n: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        self.k[layer].bytes(n * self.k_dim, &mut out);
        self.v[layer].bytes(n * self.v_dim, &mut out);
        out
    }

    /// What [`CpuKv::read`] read, back into `layer` (`k_bytes` of the keys first).
    pub fn write(&mut self, layer: usize, bytes: &[u8], k_bytes: usize) {
        let (kb, vb) = bytes.split_at(k_bytes);
        self.k[layer].write_bytes(kb);
        self.v[layer].write_bytes(vb);
    }

    /// Positions `from..to` of `layer`'s values moved to start at position `dst`.
    pub fn move_values(&mut self, layer: usize, from: usize, to: usize, dst: usize) {
        let d = self.v_dim;
        self.v[layer].copy_within(from * d..to * d, dst * d);
    }
}
