//! The GPU backend: the same [`Backend`] ops as the CPU reference, as WGSL compute shaders run
//! through wgpu (Vulkan natively, WebGPU in the browser).
//!
//! # Data layout
//! - Weights stay in GGUF block layout, uploaded tensor by tensor as raw bytes into storage
//!   buffers read as `array<u32>` and decoded by one WGSL helper per format
//!   (`shaders/common/<type>.wgsl`). A tensor larger than the adapter's storage-binding limit is
//!   split by rows into several buffers ([`GpuWeight::parts`]); ops dispatch once per part.
//! - Activations are row-major `[rows, cols]` f32 buffers from a pool of reused buffers (a buffer
//!   returns to the pool when its [`GpuAct`] is dropped; queue order makes reuse safe).
//! - The KV cache is one `[n_ctx, k_dim / 2]` buffer of f16 pairs per layer for K and for V.
//!
//! # Attention
//! `ops::qk_prep` makes q and k ready and stores k and v in one dispatch (per-head norms, RoPE,
//! q scale, the f16 cache write). `ops::attend` is then one pass over chunks of `ops::PV_CHUNK`
//! cached positions, one workgroup per (row, head, chunk), each with the chunk's scores, softmax
//! and values, plus a reduce when there is more than one chunk (split-K, as in flash-decoding):
//! one or two dispatches however long the context. Rounding follows the CPU reference (q and
//! probabilities to f16).
//!
//! # Fused ops
//! A decoded token's dispatches are few on purpose (each one costs a pass and a barrier on a
//! real GPU): every block ends in one `ops::add_norm` (residual add, Gemma's post-norm, the
//! next norm, and for Q8 products the Q8 blocks of its output); a gated FFN's gate and up are
//! joined into one weight at load (`Backend::concat_rows`) so `ops::linear_glu` computes both
//! products and the GLU in one dispatch; `ops::qk_prep` does everything between the q/k/v
//! products and the attention scores in one.
//!
//! # Recording and submission
//! Ops record dispatches (pipeline, bind group, workgroups) into a list that becomes one compute
//! pass when a copy or the submit comes (WebGPU orders the dispatches of a pass and makes each
//! one's writes visible to the next); uniform parameters go into a host-side arena written to
//! one uniform buffer just before the submit. Nothing is submitted until a readback (or an
//! explicit [`GpuBackend::flush`]), so one decoded token is one submit and one compute pass.
//!
//! Nothing is created per token in steady state: pipelines are cached by [`ShaderKey`] (the
//! self-check and the load's first-tokens check compile all the model uses); bind groups are
//! cached by pipeline and bound buffers (a token's activations come from the pool in the same order every token, and its
//! uniform slots are at the same offsets); readback staging and token-id buffers are pooled.
//! [`GpuBackend::stats`] counts dispatches, submits, compute passes and every creation, and
//! [`GpuBackend::last_submit`] lists the dispatches of the last submit (the launch audit).
//!
//! # Readback
//! [`GpuBackend::read_async`] copies to a mappable buffer, submits and awaits `map_async`:
//! natively the future is completed by polling the device, in the browser by WebGPU's callback.
//!
//! # Trust and failure
//! `crate::selfcheck` compares every op variant a model uses with the CPU backend before the
//! model loads (`crate::load` runs it). A lost device, the GPU out of memory or an error WebGPU reports
//! later fails the next flush or readback with a typed error ([`context`]); nothing here panics on
//! a lost device (no buffers mapped at creation), and `crate::load::reload_after_loss` loads the
//! model again.

pub mod context;
pub mod ops;
pub mod shader;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::backend::{AttnParams, Backend, BackendStats, KvShape, KvShift, KvType, QkPrep, RopeParams, TensorBytes, TensorSource, KV_BLOCK};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::TensorInfo;
use crate::logits::{ReadOut, Readback};
use crate::quant::GgmlType;
pub use context::{GpuContext, GpuLayout, GpuOptions};
use shader::ShaderKey;

/// One row range of a weight, in its own buffer.
pub struct WeightPart {
    pub buf: wgpu::Buffer,
    pub row0: usize,
    pub n_rows: usize,
}

/// A weight tensor in GGUF block layout: `n_rows` rows of `n_cols` elements, split by rows into
/// buffers no larger than the storage-binding limit.
pub struct GpuWeight {
    pub ty: GgmlType,
    pub n_rows: usize,
    pub n_cols: usize,
    pub row_bytes: usize,
    pub parts: Vec<WeightPart>,
}

impl GpuWeight {
    /// Element count of a small F32 tensor (norm weights, biases, RoPE factors).
    fn f32_len(&self) -> Result<usize> {
        if self.ty != GgmlType::F32 || self.parts.len() != 1 {
            return Err(Error::unsupported_model(format!("a norm/bias tensor must be F32, got {}", self.ty)));
        }
        Ok(self.n_rows * self.n_cols)
    }
}

struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    /// The free lists are in a canonical order (sorted) since the last submit. A decoded token
    /// allocates and frees the same sequence every token: taking buffers from canonically
    /// ordered lists gives it the same buffers every token (or every other token), so its bind
    /// groups come from the cache instead of being created per token.
    canonical: bool,
}

/// A pooled buffer; goes back to the pool on drop.
pub struct ActBuf {
    buf: Option<wgpu::Buffer>,
    class: u64,
    pool: Rc<RefCell<Pool>>,
}

impl Drop for ActBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.borrow_mut().free.entry(self.class).or_default().push(b);
        }
    }
}

/// An activation: row-major `[rows, cols]` f32 on the device.
pub struct GpuAct {
    buf: ActBuf,
    /// Unique per allocation (keys the Q8 activation cache).
    id: u64,
    pub rows: usize,
    pub cols: usize,
}

impl GpuAct {
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buf.as_ref().expect("live buffer")
    }
}

/// Keys and values of every layer, `[n_ctx, row]` per buffer: f16 pairs (`k[layer]`:
/// `[n_ctx, k_dim / 2]` u32), or q8_0 as the Q8 activation blocks of `common/q8.wgsl` (per 32
/// values 9 words: the scale as an f32 rounded to f16, then 8 words of 4 packed i8; 36 bytes
/// where the portable layout has 34, so that each block is whole words and written by one
/// invocation).
pub struct GpuKv {
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
    k_dim: usize,
    v_dim: usize,
    n_ctx: usize,
    ty: KvType,
}

impl GpuKv {
    fn shape(&self) -> KvShape {
        KvShape { n_layer: self.k.len(), k_dim: self.k_dim, v_dim: self.v_dim, n_ctx: self.n_ctx, ty: self.ty }
    }
}

/// Bytes of one position's `dim` cached values in the GPU's layout ([`GpuKv`]).
pub fn kv_row_bytes(ty: KvType, dim: usize) -> u64 {
    match ty {
        KvType::F16 => dim as u64 * 2,
        KvType::Q8_0 => (dim / KV_BLOCK) as u64 * 36,
    }
}

/// Bytes of a whole cache of `shape` in the GPU's layout (what [`GpuBackend`] allocates for it).
pub fn kv_cache_bytes(shape: KvShape) -> Option<u64> {
    let rows = kv_row_bytes(shape.ty, shape.k_dim).checked_add(kv_row_bytes(shape.ty, shape.v_dim))?;
    rows.checked_mul(shape.n_ctx as u64)?.checked_mul(shape.n_layer as u64)
}

/// Portable q8_0 blocks (f16 scale, 32 i8: 34 bytes) from the GPU's (f32 scale, 32 i8: 36 bytes).
fn q8_blocks_portable(gpu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(gpu.len() / 36 * 34);
    for b in gpu.chunks_exact(36) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        out.extend_from_slice(&crate::quant::f32_to_f16(d).to_le_bytes());
        out.extend_from_slice(&b[4..]);
    }
    out
}

/// The GPU's q8_0 blocks from portable ones ([`q8_blocks_portable`] turned around).
fn q8_blocks_gpu(portable: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(portable.len() / 34 * 36);
    for b in portable.chunks_exact(34) {
        out.extend_from_slice(&crate::quant::f16_to_f32(u16::from_le_bytes([b[0], b[1]])).to_le_bytes());
        out.extend_from_slice(&b[2..]);
    }
    out
}

/// One recorded dispatch, for the launch audit ([`GpuBackend::last_submit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchRecord {
    /// The shader (`shaders/<op>.wgsl`) and entry point.
    pub op: &'static str,
    pub entry: &'static str,
    pub workgroups: [u32; 3],
    /// Workgroups times the workgroup size.
    pub invocations: u64,
    /// Weight rows streamed (weight-streaming ops), else 0.
    pub rows: usize,
}

/// A dispatch waiting for its compute pass.
struct Pending {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32, u32),
}

/// What a cached bind group binds: the pipeline, then (binding, buffer, offset) per entry.
type BindKey = (wgpu::ComputePipeline, Vec<(u32, wgpu::Buffer, u64)>);

/// Cached bind groups kept at most (a prefill of a long prompt makes new ones per chunk; the
/// cache starts over when full).
const BIND_CACHE_MAX: usize = 4096;

/// A binding of one dispatch.
pub enum Bind<'a> {
    Buf(&'a wgpu::Buffer),
    Act(&'a GpuAct),
}

/// Bytes of the uniform arena (slots of `min_uniform_buffer_offset_alignment`); a forward pass
/// with more dispatches than slots submits early.
const PARAM_ARENA_BYTES: u64 = 1 << 20;

pub struct GpuBackend {
    pub ctx: Rc<GpuContext>,
    pipelines: HashMap<ShaderKey, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    enc: Option<wgpu::CommandEncoder>,
    /// Dispatches recorded since the last compute pass was encoded.
    pending: Vec<Pending>,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
    /// Mappable readback buffers by size (a power of two), reused.
    staging: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Token-id buffers of `get_rows`: one per call in a submit (writes land before the submit,
    /// so two calls of one submit cannot share one), reused from submit to submit.
    ids_bufs: Vec<wgpu::Buffer>,
    ids_used: usize,
    /// Buffers created so far (a `Cell`: weights are made through `&self`).
    buffers_created: std::cell::Cell<u64>,
    /// The dispatches of the submit being recorded, and of the last one.
    log: Vec<DispatchRecord>,
    last_log: Vec<DispatchRecord>,
    /// Tests: the buffer `linear.wgsl` TRACE records weight loads into (binding 15).
    trace: Option<GpuAct>,
    params_host: Vec<u8>,
    params_buf: wgpu::Buffer,
    param_align: usize,
    pool: Rc<RefCell<Pool>>,
    stats: BackendStats,
    /// Decode matrix-vector products of the `ops::has_dot_q8` formats (Q4_0, Q5_0, Q8_0) quantize
    /// the activation row to Q8 and multiply with `dot4I8Packed` (`ops::quantize_q8`,
    /// `linear.wgsl` `XQ8`); off: f32 activations as in prefill. From [`GpuOptions::no_q8_acts`].
    pub q8_acts: bool,
    /// Set once a product took Q8 activations: from then on `ops::add_norm` writes its output
    /// as Q8 blocks too (models whose products never take them do not pay for it).
    q8_used: bool,
    next_act_id: u64,
    q8_cache: Option<Q8Cache>,
}

/// The Q8 blocks of one activation, reusable by the next decode product of the same activation
/// (q, k and v, or gate and up) as long as no other dispatch was recorded in between: any op
/// that could change the activation is a dispatch.
struct Q8Cache {
    of: u64,
    at_dispatch: u64,
    q: Rc<GpuAct>,
}

impl GpuBackend {
    /// Pick an adapter, request a device with its real limits, and set up the backend.
    pub async fn new(opts: &GpuOptions) -> Result<GpuBackend> {
        let ctx = GpuContext::new(opts).await?;
        let mut b = Self::with_context(Rc::new(ctx));
        b.q8_acts = !opts.no_q8_acts;
        Ok(b)
    }

    pub fn with_context(ctx: Rc<GpuContext>) -> GpuBackend {
        let params_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: PARAM_ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let param_align = ctx.limits.min_uniform_buffer_offset_alignment.max(16) as usize;
        GpuBackend {
            ctx,
            pipelines: HashMap::new(),
            enc: None,
            pending: Vec::new(),
            bind_groups: HashMap::new(),
            staging: HashMap::new(),
            ids_bufs: Vec::new(),
            ids_used: 0,
            // The uniform arena, made above before the backend (and `new_buffer`) exists.
            buffers_created: std::cell::Cell::new(1),
            log: Vec::new(),
            last_log: Vec::new(),
            trace: None,
            params_host: Vec::new(),
            params_buf,
            param_align,
            pool: Rc::new(RefCell::new(Pool { free: HashMap::new(), canonical: false })),
            stats: BackendStats::default(),
            q8_acts: true,
            q8_used: false,
            next_act_id: 0,
            q8_cache: None,
        }
    }

    /// Native convenience: [`GpuBackend::new`] run to completion on this thread (in the browser,
    /// where nothing may block, use [`GpuBackend::new`]).
    pub fn new_blocking(opts: &GpuOptions) -> Result<GpuBackend> {
        crate::block_on(Self::new(opts))
    }

    /// A pooled activation buffer for `[rows, cols]` f32 (contents undefined).
    pub fn alloc(&mut self, rows: usize, cols: usize) -> Result<GpuAct> {
        let bytes = (rows * cols * 4).max(16) as u64;
        let class = bytes.next_power_of_two();
        if class > self.ctx.limits.max_storage_buffer_binding_size as u64 {
            return Err(Error::invalid_argument(format!(
                "an activation of {rows} x {cols} exceeds the GPU's storage-binding limit"
            )));
        }
        let reused = {
            let mut pool = self.pool.borrow_mut();
            if !pool.canonical {
                // Popped from the end: the smallest buffer id first.
                pool.free.values_mut().for_each(|v| v.sort_unstable_by(|a, b| b.cmp(a)));
                pool.canonical = true;
            }
            pool.free.get_mut(&class).and_then(|v| v.pop())
        };
        let buf = reused.unwrap_or_else(|| {
            self.new_buffer("act", class, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST)
        });
        self.next_act_id += 1;
        Ok(GpuAct { buf: ActBuf { buf: Some(buf), class, pool: self.pool.clone() }, id: self.next_act_id, rows, cols })
    }

    /// `x` as Q8 blocks for a decode product (`ops::quantize_q8`), reused from the previous
    /// product when that one read the same `x` and nothing was dispatched since.
    pub fn q8_of(&mut self, x: &GpuAct) -> Result<Rc<GpuAct>> {
        if let Some(c) = &self.q8_cache {
            if c.of == x.id && c.at_dispatch == self.stats.dispatches {
                return Ok(c.q.clone());
            }
        }
        self.q8_used = true;
        let q = Rc::new(ops::quantize_q8(self, x)?);
        self.q8_cache = Some(Q8Cache { of: x.id, at_dispatch: self.stats.dispatches, q: q.clone() });
        Ok(q)
    }

    /// Record `q` as the Q8 blocks of `x`, written by the dispatch just recorded.
    pub(crate) fn q8_cache_set(&mut self, x: &GpuAct, q: GpuAct) {
        self.q8_cache = Some(Q8Cache { of: x.id, at_dispatch: self.stats.dispatches, q: Rc::new(q) });
    }

    /// Marks the cached Q8 blocks of `x` (if any) as still valid after the dispatches of a
    /// product that only read `x`.
    pub(crate) fn q8_keep(&mut self, x: &GpuAct) {
        let now = self.stats.dispatches;
        if let Some(c) = self.q8_cache.as_mut().filter(|c| c.of == x.id) {
            c.at_dispatch = now;
        }
    }

    /// An activation with the given contents (tests, host-side inputs).
    pub fn upload_act(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<GpuAct> {
        assert_eq!(data.len(), rows * cols);
        let a = self.alloc(rows, cols)?;
        if !data.is_empty() {
            self.ctx.queue.write_buffer(a.buffer(), 0, bytemuck::cast_slice(data));
        }
        Ok(a)
    }

    /// Every buffer the backend makes, counted ([`BackendStats::buffers_created`]). None is
    /// mapped at creation: on a lost device mapping panics inside wgpu, while a write through the
    /// queue is an error the next check reports.
    fn new_buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.buffers_created.set(self.buffers_created.get() + 1);
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
    }

    /// A storage buffer holding `data` for the dispatches of this submit (from the ids pool).
    fn upload_u32(&mut self, data: &[u32]) -> wgpu::Buffer {
        let size = (std::mem::size_of_val(data) as u64).max(4);
        let i = self.ids_used;
        self.ids_used += 1;
        if self.ids_bufs.get(i).is_none_or(|b| b.size() < size) {
            let buf = self.new_buffer("ids", size.next_power_of_two().max(64), wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
            if i < self.ids_bufs.len() {
                self.ids_bufs[i] = buf;
            } else {
                self.ids_bufs.push(buf);
            }
        }
        let buf = self.ids_bufs[i].clone();
        if !data.is_empty() {
            self.ctx.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
        }
        buf
    }

    /// The dispatches of the last submit (for a decoded token: the whole token).
    pub fn last_submit(&self) -> &[DispatchRecord] {
        &self.last_log
    }

    /// Tests: record the weight loads of `linear` dispatches into `trace` (`[32, 16]` u32, see
    /// `shaders/common/bytes.wgsl` TRACE); `None` stops.
    #[doc(hidden)]
    pub fn set_trace(&mut self, trace: Option<GpuAct>) {
        self.trace = trace;
    }

    /// Tests: the traced word indices, `[32 lanes][16 loads]` (u32::MAX where none).
    #[doc(hidden)]
    pub async fn read_trace(&mut self) -> Result<Vec<u32>> {
        let t = self.trace.take().ok_or_else(|| Error::internal("no trace buffer set"))?;
        let bytes = self.read_bytes(t.buffer(), (t.len() * 4) as u64).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    fn pipeline(&mut self, key: &ShaderKey) -> Result<&(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        if !self.pipelines.contains_key(key) {
            let src = key.wgsl()?;
            let module = self.ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(key.shader),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            let pipeline = self.ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key.shader),
                layout: None,
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            self.pipelines.insert(key.clone(), (pipeline, layout));
            self.stats.pipelines_created += 1;
        }
        Ok(&self.pipelines[key])
    }

    /// Record one dispatch: `binds` plus the uniform `params` at binding `pbind`.
    pub fn dispatch<P: bytemuck::Pod>(&mut self, key: ShaderKey, params: &P, binds: &[(u32, Bind)], pbind: u32, groups: (u32, u32, u32)) -> Result<()> {
        self.dispatch_rows(key, params, binds, pbind, groups, 0)
    }

    /// [`GpuBackend::dispatch`] of an op that streams `rows` weight rows (the launch audit).
    pub fn dispatch_rows<P: bytemuck::Pod>(&mut self, mut key: ShaderKey, params: &P, binds: &[(u32, Bind)], pbind: u32, groups: (u32, u32, u32), rows: usize) -> Result<()> {
        let psize = std::mem::size_of::<P>();
        let off = self.params_host.len().next_multiple_of(self.param_align);
        if (off + psize) as u64 > PARAM_ARENA_BYTES {
            self.flush()?;
        }
        let off = self.params_host.len().next_multiple_of(self.param_align);
        self.params_host.resize(off, 0);
        self.params_host.extend_from_slice(bytemuck::bytes_of(params));
        let trace = if key.shader == "linear" { self.trace.as_ref().map(|t| t.buffer().clone()) } else { None };
        if trace.is_some() {
            key = key.flag("TRACE");
        }
        self.pipeline(&key)?;
        let (pipeline, layout) = &self.pipelines[&key];
        let mut bound: Vec<(u32, wgpu::Buffer, u64)> = binds
            .iter()
            .map(|(i, b)| {
                let buf = match b {
                    Bind::Buf(buf) => (*buf).clone(),
                    Bind::Act(a) => a.buffer().clone(),
                };
                (*i, buf, 0)
            })
            .collect();
        bound.push((pbind, self.params_buf.clone(), off as u64));
        bound.extend(trace.map(|t| (15, t, 0)));
        let bind_key = (pipeline.clone(), bound);
        let bind_group = match self.bind_groups.get(&bind_key) {
            Some(bg) => bg.clone(),
            None => {
                let entries: Vec<wgpu::BindGroupEntry> = bind_key
                    .1
                    .iter()
                    .map(|(i, buf, off)| wgpu::BindGroupEntry {
                        binding: *i,
                        resource: if *i == pbind {
                            wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: buf, offset: *off, size: std::num::NonZeroU64::new(psize as u64) })
                        } else {
                            buf.as_entire_binding()
                        },
                    })
                    .collect();
                let bg = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout, entries: &entries });
                self.stats.bind_groups_created += 1;
                if self.bind_groups.len() >= BIND_CACHE_MAX {
                    self.bind_groups.clear();
                }
                self.bind_groups.insert(bind_key, bg.clone());
                bg
            }
        };
        let wg_size: u64 = key.defines.get("WG").and_then(|v| v.parse().ok()).unwrap_or(1);
        let n_groups = groups.0 as u64 * groups.1 as u64 * groups.2 as u64;
        self.log.push(DispatchRecord {
            op: key.shader,
            entry: key.entry,
            workgroups: [groups.0, groups.1, groups.2],
            invocations: n_groups * wg_size,
            rows,
        });
        self.pending.push(Pending { pipeline: pipeline.clone(), bind_group, groups });
        self.stats.dispatches += 1;
        Ok(())
    }

    /// Forget cached bind groups (they keep their buffers alive): after the self-check, whose
    /// test buffers are dropped.
    pub fn clear_bind_groups(&mut self) {
        self.bind_groups.clear();
    }

    /// Encode the pending dispatches as one compute pass.
    fn end_pass(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let enc = self
            .enc
            .get_or_insert_with(|| self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }));
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            for d in &self.pending {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.groups.0, d.groups.1, d.groups.2);
            }
        }
        self.pending.clear();
        self.stats.compute_passes += 1;
    }

    /// The open command encoder, for a copy: the dispatches recorded so far go first.
    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.end_pass();
        self.enc
            .get_or_insert_with(|| self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }))
    }

    /// Submit everything recorded so far (one submit), writing the uniform arena first.
    pub fn flush(&mut self) -> Result<()> {
        self.ctx.check()?;
        self.end_pass();
        self.ids_used = 0;
        self.pool.borrow_mut().canonical = false;
        if let Some(enc) = self.enc.take() {
            std::mem::swap(&mut self.log, &mut self.last_log);
            self.log.clear();
            if !self.params_host.is_empty() {
                self.ctx.queue.write_buffer(&self.params_buf, 0, &self.params_host);
                self.params_host.clear();
            }
            self.ctx.queue.submit([enc.finish()]);
            self.stats.submits += 1;
        }
        Ok(())
    }

    /// Copy the first `bytes` of `src` to the host: one submit, then await the mapping.
    async fn read_bytes(&mut self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT).max(4);
        let class = size.next_power_of_two();
        let reused = self.staging.get_mut(&class).and_then(|v| v.pop());
        let staging = reused.unwrap_or_else(|| self.new_buffer("readback", class, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST));
        self.encoder().copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.flush()?;
        let fut = MapFuture::default();
        let state = fut.0.clone();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let mut s = state.lock().unwrap();
            s.done = Some(r.map_err(|e| e.to_string()));
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::new(ErrorCode::DeviceLost, format!("waiting for the GPU failed: {e}")))?;
        if let Err(e) = fut.await {
            // A device that is lost fails its readbacks before (browsers) the loss is reported:
            // wait a little for the report, so the error says what happened.
            #[cfg(target_arch = "wasm32")]
            for _ in 0..20 {
                if self.ctx.check().is_err() {
                    break;
                }
                crate::timer::sleep_ms(5).await;
            }
            self.ctx.check()?;
            return Err(Error::new(ErrorCode::DeviceLost, format!("GPU readback failed: {e}")));
        }
        self.ctx.check()?;
        let data = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::internal(format!("GPU readback mapping: {e}")))?[..bytes as usize]
            .to_vec();
        staging.unmap();
        self.staging.entry(class).or_default().push(staging);
        Ok(data)
    }

    /// Copy an activation back to the host, row-major.
    pub async fn read_async(&mut self, x: &GpuAct) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(x.buffer(), (x.len() * 4) as u64).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// The best token of a one-row logits activation: `(id, logit)`; 8 bytes read back.
    pub async fn argmax_async(&mut self, x: &GpuAct) -> Result<(u32, f32)> {
        Ok(self.argmax_rows_async(x).await?[0])
    }

    /// [`Self::argmax_async`] of every row of `x`: `8 * rows` bytes read back.
    pub async fn argmax_rows_async(&mut self, x: &GpuAct) -> Result<Vec<(u32, f32)>> {
        let out = self.alloc(x.rows, 2)?;
        ops::argmax(self, x, &out)?;
        let bytes = self.read_bytes(out.buffer(), (8 * x.rows) as u64).await?;
        let w: &[u32] = bytemuck::cast_slice(&bytes);
        Ok(w.chunks_exact(2).map(|c| (c[0], f32::from_bits(c[1]))).collect())
    }

    /// The `k` best tokens of a one-row logits activation, by logit descending (ties to the
    /// lower id); `8k` bytes read back.
    pub async fn top_k_async(&mut self, x: &GpuAct, k: usize) -> Result<Vec<(u32, f32)>> {
        let k = k.min(x.len());
        let out = self.alloc(1, 2 * k)?;
        ops::top_k(self, x, k, &out)?;
        let bytes = self.read_bytes(out.buffer(), (8 * k) as u64).await?;
        let w: &[u32] = bytemuck::cast_slice(&bytes);
        Ok(w.chunks_exact(2).filter(|c| c[0] != u32::MAX).map(|c| (c[0], f32::from_bits(c[1]))).collect())
    }
}

#[derive(Default)]
struct MapState {
    done: Option<std::result::Result<(), String>>,
    waker: Option<Waker>,
}

/// Completes when the `map_async` callback has run.
#[derive(Default)]
struct MapFuture(Arc<Mutex<MapState>>);

impl Future for MapFuture {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.lock().unwrap();
        match s.done.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Largest piece of a weight read and uploaded at once by [`Backend::load_weight`] (a multiple of 4,
/// as `write_buffer` requires).
pub const UPLOAD_PIECE: u64 = 8 << 20;

/// The most bytes of KV cache [`crate::engine::Engine`] lets the GPU backend allocate (WebGPU does
/// not say how much memory the device has; each buffer is also checked against its limits).
pub const GPU_KV_BUDGET: u64 = 16 << 30;

impl GpuBackend {
    /// Empty buffers for the rows of `info` (whose data is `len` bytes): as many rows per buffer as
    /// fit one storage binding (a multiple of 4 rows, for u32 alignment).
    fn weight_buffers(&self, info: &TensorInfo, len: u64) -> Result<GpuWeight> {
        let (n_rows, n_cols) = (info.n_rows(), info.n_cols());
        let row_bytes = crate::backend::checked_row_bytes(info, len)?;
        let limit = (self.ctx.limits.max_storage_buffer_binding_size as u64).min(self.ctx.limits.max_buffer_size) as usize;
        let per = (limit / row_bytes.max(1)) / 4 * 4;
        if per == 0 {
            return Err(Error::unsupported_model(format!("tensor '{}': one row exceeds the GPU's binding limit", info.name)));
        }
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < n_rows {
            let n = per.min(n_rows - row0);
            // COPY_SRC: `concat_rows` copies weights into one buffer.
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            let buf = self.new_buffer(&info.name, ((n * row_bytes) as u64).next_multiple_of(4).max(4), usage);
            parts.push(WeightPart { buf, row0, n_rows: n });
            row0 += n;
        }
        Ok(GpuWeight { ty: info.ty, n_rows, n_cols, row_bytes, parts })
    }

    /// Write `data` at `offset` (a multiple of 4) of `buf`; a tail that is not a whole u32 is
    /// padded with zeros (the buffer's size is rounded up to 4 for it).
    fn upload(&self, buf: &wgpu::Buffer, offset: u64, data: &[u8]) {
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            self.ctx.queue.write_buffer(buf, offset, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.ctx.queue.write_buffer(buf, offset + whole as u64, &tail);
        }
    }
}

impl Backend for GpuBackend {
    type Weight = GpuWeight;
    type Act = GpuAct;
    type Kv = GpuKv;

    fn name(&self) -> &'static str {
        "gpu"
    }

    fn weight(&mut self, info: &TensorInfo, bytes: TensorBytes) -> Result<GpuWeight> {
        let w = self.weight_buffers(info, bytes.range.len() as u64)?;
        let data = bytes.as_slice();
        for p in &w.parts {
            self.upload(&p.buf, 0, &data[p.row0 * w.row_bytes..(p.row0 + p.n_rows) * w.row_bytes]);
        }
        Ok(w)
    }

    /// Upload in pieces of at most [`UPLOAD_PIECE`] bytes, each read from `src` just before it is
    /// written: wasm memory holds one piece at a time, never the whole tensor (Gemma 3's tied
    /// `token_embd` is 178 MB).
    async fn load_weight<S: TensorSource>(&mut self, info: &TensorInfo, src: &S, range: std::ops::Range<u64>) -> Result<GpuWeight> {
        let w = self.weight_buffers(info, range.end - range.start)?;
        for p in &w.parts {
            let (start, end) = ((p.row0 * w.row_bytes) as u64, ((p.row0 + p.n_rows) * w.row_bytes) as u64);
            let mut at = start;
            while at < end {
                let n = UPLOAD_PIECE.min(end - at);
                let piece = src.read(range.start + at..range.start + at + n).await?;
                self.upload(&p.buf, at - start, piece.as_slice());
                at += n;
            }
        }
        Ok(w)
    }

    /// One buffer per layer for keys and one for values ([`GpuKv`]). Each must fit one storage
    /// binding: checked before `create_buffer` (an oversized buffer is a WebGPU validation error,
    /// not an exception).
    fn kv_cache(&mut self, shape: KvShape) -> Result<GpuKv> {
        let KvShape { n_layer, k_dim, v_dim, n_ctx, ty } = shape;
        shape.check_rows()?;
        let limit = (self.ctx.limits.max_storage_buffer_binding_size as u64).min(self.ctx.limits.max_buffer_size);
        let widest = kv_row_bytes(ty, k_dim.max(v_dim));
        let size = |dim: usize| (n_ctx as u64).checked_mul(kv_row_bytes(ty, dim)).map(|b| b.next_multiple_of(4).max(4));
        if size(k_dim.max(v_dim)).map_or(true, |b| b > limit) {
            return Err(Error::invalid_argument(format!(
                "a context of {n_ctx} tokens needs key/value buffers larger than the {} MiB this GPU allows \
                 in one buffer; the largest context that fits is {} tokens",
                limit >> 20,
                limit / widest.max(1)
            )));
        }
        // COPY_SRC / COPY_DST: a saved session reads the cache back and writes it again.
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let mk = |dim: usize| self.new_buffer("kv", size(dim).expect("checked above"), usage);
        Ok(GpuKv {
            k: (0..n_layer).map(|_| mk(k_dim)).collect(),
            v: (0..n_layer).map(|_| mk(v_dim)).collect(),
            k_dim,
            v_dim,
            n_ctx,
            ty,
        })
    }
    fn kv_budget(&self) -> u64 {
        GPU_KV_BUDGET
    }
    fn kv_bytes(&self, shape: KvShape) -> Option<u64> {
        kv_cache_bytes(shape)
    }

    async fn read_kv(&mut self, kv: &GpuKv, layer: usize, n: usize) -> Result<Vec<u8>> {
        crate::backend::kv_span(kv.shape(), layer, n, None)?;
        let (k, v) = (n as u64 * kv_row_bytes(kv.ty, kv.k_dim), n as u64 * kv_row_bytes(kv.ty, kv.v_dim));
        let mut out = self.read_bytes(&kv.k[layer], k).await?;
        out.extend_from_slice(&self.read_bytes(&kv.v[layer], v).await?);
        Ok(match kv.ty {
            KvType::F16 => out,
            KvType::Q8_0 => q8_blocks_portable(&out),
        })
    }

    /// Through the queue, after everything recorded so far is submitted (so no recorded pass
    /// reads the cache after this write).
    fn write_kv(&mut self, kv: &mut GpuKv, layer: usize, n: usize, bytes: &[u8]) -> Result<()> {
        let (k, _) = crate::backend::kv_span(kv.shape(), layer, n, Some(bytes.len()))?;
        self.flush()?;
        let (kb, vb) = bytes.split_at(k);
        match kv.ty {
            KvType::F16 => {
                self.upload(&kv.k[layer], 0, kb);
                self.upload(&kv.v[layer], 0, vb);
            }
            KvType::Q8_0 => {
                self.upload(&kv.k[layer], 0, &q8_blocks_gpu(kb));
                self.upload(&kv.v[layer], 0, &q8_blocks_gpu(vb));
            }
        }
        self.ctx.check()
    }

    /// Per layer: the moved key rows copied aside, then `shaders/rope_shift.wgsl` writes them
    /// turned back to their new rows; the moved value rows go aside and back unchanged (a buffer
    /// cannot be copied onto an overlapping part of itself).
    fn kv_shift(&mut self, kv: &mut GpuKv, s: KvShift, rope: &[RopeParams], freq_factors: Option<&GpuWeight>) -> Result<()> {
        s.check(kv.shape(), rope)?;
        let m = s.n - s.keep - s.discard;
        if m == 0 {
            return Ok(());
        }
        let (kr, vr) = (kv_row_bytes(kv.ty, kv.k_dim), kv_row_bytes(kv.ty, kv.v_dim));
        let (from, keep, m) = ((s.keep + s.discard) as u64, s.keep as u64, m as u64);
        for (l, r) in rope.iter().enumerate() {
            let ks = self.alloc(1, (m * kr).div_ceil(4) as usize)?;
            let vs = self.alloc(1, (m * vr).div_ceil(4) as usize)?;
            let (kc, vc) = (kv.k[l].clone(), kv.v[l].clone());
            let enc = self.encoder();
            enc.copy_buffer_to_buffer(&kc, from * kr, ks.buffer(), 0, m * kr);
            enc.copy_buffer_to_buffer(&vc, from * vr, vs.buffer(), 0, m * vr);
            enc.copy_buffer_to_buffer(vs.buffer(), 0, &vc, keep * vr, m * vr);
            ops::rope_shift(self, &kc, &ks, m as usize, kv.k_dim, s.keep, -(s.discard as i64), *r, freq_factors, kv.ty)?;
        }
        self.flush()?;
        self.ctx.check()
    }

    fn get_rows(&mut self, w: &GpuWeight, ids: &[u32], scale: f32) -> Result<GpuAct> {
        ops::get_rows(self, w, ids, scale)
    }
    fn rms_norm(&mut self, x: &GpuAct, w: &GpuWeight, eps: f32) -> Result<GpuAct> {
        ops::rms_norm(self, x, w, eps)
    }
    /// One dispatch: `shaders/add_norm.wgsl`.
    fn add_norm(&mut self, t: &GpuAct, post: Option<&GpuWeight>, res: &GpuAct, w: &GpuWeight, eps: f32) -> Result<(GpuAct, GpuAct)> {
        ops::add_norm(self, t, post, res, w, eps)
    }
    /// One dispatch per decode row: `shaders/linear.wgsl` with GLU.
    fn linear_glu(&mut self, x: &GpuAct, w: &GpuWeight, n_ff: usize, gelu: bool) -> Result<GpuAct> {
        if w.n_rows != 2 * n_ff {
            return Err(Error::internal(format!("linear_glu: {} rows for n_ff {n_ff}", w.n_rows)));
        }
        ops::linear_glu(self, x, w, gelu)
    }
    /// Weights of one format and width, each in one buffer, whose rows fit one storage binding
    /// together: copied into one buffer on the device (the originals are freed when dropped).
    fn concat_rows(&mut self, ws: &[&GpuWeight]) -> Result<Option<GpuWeight>> {
        let Some(first) = ws.first() else { return Ok(None) };
        let limit = (self.ctx.limits.max_storage_buffer_binding_size as u64).min(self.ctx.limits.max_buffer_size);
        let same = ws.iter().all(|w| w.ty == first.ty && w.n_cols == first.n_cols && w.parts.len() == 1);
        let bytes: Vec<u64> = ws.iter().map(|w| (w.n_rows * w.row_bytes) as u64).collect();
        let total: u64 = bytes.iter().sum();
        if !same || bytes.iter().any(|b| b % 4 != 0) || total > limit {
            return Ok(None);
        }
        let buf = self.new_buffer("concat", total.max(4), wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC);
        let mut at = 0;
        for (w, &n) in ws.iter().zip(&bytes) {
            let src = w.parts[0].buf.clone();
            self.encoder().copy_buffer_to_buffer(&src, 0, &buf, at, n);
            at += n;
        }
        self.flush()?;
        let n_rows = ws.iter().map(|w| w.n_rows).sum();
        Ok(Some(GpuWeight { ty: first.ty, n_rows, n_cols: first.n_cols, row_bytes: first.row_bytes, parts: vec![WeightPart { buf, row0: 0, n_rows }] }))
    }
    fn linear(&mut self, x: &GpuAct, w: &GpuWeight, bias: Option<&GpuWeight>) -> Result<GpuAct> {
        ops::linear(self, x, w, bias)
    }
    /// One dispatch per row part: `shaders/linear.wgsl` with SPLIT.
    fn linear_split(&mut self, x: &GpuAct, w: &GpuWeight, widths: &[usize]) -> Result<Vec<GpuAct>> {
        ops::linear_split(self, x, w, widths)
    }
    fn split_cols(&mut self, x: &GpuAct, widths: &[usize]) -> Result<Vec<GpuAct>> {
        ops::split_cols(self, x, widths)
    }
    fn attend(&mut self, kv: &GpuKv, q: &GpuAct, p: AttnParams) -> Result<GpuAct> {
        ops::attend(self, kv, q, p)
    }
    /// One dispatch: `shaders/qk_prep.wgsl`.
    fn attn_prep(&mut self, kv: &mut GpuKv, q: GpuAct, k: GpuAct, v: &GpuAct, prep: QkPrep<'_, GpuWeight>, p: AttnParams) -> Result<GpuAct> {
        ops::qk_prep(self, kv, q, k, v, prep, p)
    }
    fn glu(&mut self, gate: &GpuAct, up: &GpuAct, gelu: bool) -> Result<GpuAct> {
        ops::glu(self, gate, up, gelu)
    }
    /// A copy of rows `start..` (a buffer copy, no dispatch).
    fn rows_from(&mut self, x: &GpuAct, start: usize) -> Result<GpuAct> {
        if start >= x.rows {
            return Err(Error::internal(format!("rows_from: shape mismatch ({start} vs {})", x.rows)));
        }
        let out = self.alloc(x.rows - start, x.cols)?;
        let src = x.buffer().clone();
        let dst = out.buffer().clone();
        self.encoder().copy_buffer_to_buffer(&src, (start * x.cols * 4) as u64, &dst, 0, (out.len() * 4) as u64);
        Ok(out)
    }
    fn softcap(&mut self, x: &mut GpuAct, cap: f32) -> Result<()> {
        ops::softcap(self, x, cap)
    }
    async fn read(&mut self, x: &GpuAct) -> Result<Vec<f32>> {
        self.read_async(x).await
    }
    /// Argmax and top-k (1 <= k <= `ops::MAX_TOP_K`) are selected on the device; only the winners
    /// are read back. Any other request reads the whole row and selects on the host.
    async fn read_logits(&mut self, x: &GpuAct, what: Readback) -> Result<ReadOut> {
        if x.rows != 1 {
            return Err(Error::internal(format!("read_logits needs one row, got {}", x.rows)));
        }
        match what {
            Readback::Argmax => Ok(ReadOut::Candidates(vec![self.argmax_async(x).await?])),
            Readback::TopK(k) if k >= 1 && k <= ops::MAX_TOP_K => Ok(ReadOut::Candidates(self.top_k_async(x, k).await?)),
            _ => Ok(what.select(self.read_async(x).await?)),
        }
    }
    async fn read_logits_rows(&mut self, x: &GpuAct, n_vocab: usize, what: Readback) -> Result<Vec<ReadOut>> {
        match what {
            Readback::Argmax => Ok(self.argmax_rows_async(x).await?.into_iter().map(|c| ReadOut::Candidates(vec![c])).collect()),
            _ => Ok(what.select_rows(&self.read_async(x).await?, n_vocab)),
        }
    }
    fn submit(&mut self) -> Result<()> {
        self.flush()
    }

    fn stats(&self) -> BackendStats {
        BackendStats { buffers_created: self.buffers_created.get(), ..self.stats }
    }
}

#[cfg(test)]
mod tests;
