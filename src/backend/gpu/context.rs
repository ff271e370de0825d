//! The wgpu context: adapter and device selection with the adapter's real limits and optional
//! features, and device-loss tracking.
//!
//! Natively wgpu runs on Vulkan (Mesa lavapipe in tests); on wasm32 on the browser's WebGPU.
//! `shader-f16`, `timestamp-query` and (natively) `subgroups` are requested when the adapter
//! has them and never required.
//!
//! The kernel layout ([`GpuLayout`]) is chosen here, per adapter: CPU-emulated adapters get the
//! per-row decode products they run fastest, hardware GPUs the cooperative (coalesced) ones. Every failure (no WebGPU, no adapter, a refused device, a lost device, the GPU out
//! of memory) is an [`ErrorCode::DeviceLost`] error whose message says what happened, so a
//! caller in `backend: "auto"` can fall back to the CPU backend and show why.
//!
//! WebGPU reports errors of its calls (validation, out of memory) asynchronously, to an error
//! scope or the device's uncaptured-error handler. The context installs that handler: the first
//! error is kept (a device loss replaces it: the loss explains it), and every later
//! [`GpuContext::check`] (each flush and readback) fails with it, so no call goes on computing
//! with invalid objects. A validation error is a bug of ours
//! ([`ErrorCode::Internal`]).

use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorCode, Result};

/// How the decode matrix-vector products map onto invocations (`shaders/linear.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuLayout {
    /// One invocation per weight row: the fastest layout on CPU-emulated adapters (lavapipe,
    /// SwiftShader), where an invocation is a SIMD lane of a CPU thread and a long sequential
    /// walk through one row is what a CPU's caches and prefetchers serve best.
    Software,
    /// Cooperative: a workgroup of `ops::COOP_WG` invocations owns `ops::COOP_ROWS` rows, and
    /// the `ops::COOP_LANES` lanes of a row read consecutive words of it (coalesced loads, tens
    /// of thousands of invocations in flight), summed per row by subgroup operations where the
    /// device has them, else in workgroup memory. What real GPUs need to reach their bandwidth.
    Hardware,
}

impl GpuLayout {
    pub fn name(self) -> &'static str {
        match self {
            GpuLayout::Software => "software",
            GpuLayout::Hardware => "hardware",
        }
    }
    /// `"software"` or `"hardware"`.
    pub fn parse(s: &str) -> Result<GpuLayout> {
        match s {
            "software" => Ok(GpuLayout::Software),
            "hardware" => Ok(GpuLayout::Hardware),
            _ => Err(Error::invalid_argument(format!("gpu layout must be software or hardware; got {s:?}"))),
        }
    }
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub info: wgpu::AdapterInfo,
    /// The kernel layout of the decode products (by adapter, or [`GpuOptions::layout`]).
    pub layout: GpuLayout,
    /// Subgroup operations are enabled (natively, where the adapter has them; `ops` uses them
    /// where no subgroup, `info.subgroup_max_size`, is wider than a row of its products).
    pub subgroups: bool,
    /// The first failure: set by the device-lost callback or the uncaptured-error handler.
    failed: Arc<Mutex<Option<Error>>>,
}

/// Options for [`GpuContext::new`].
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Cap the storage-binding size below the adapter's (tests of row-split weights).
    pub max_binding_bytes: Option<u64>,
    /// Do not request `shader-f16` even where the adapter has it.
    pub no_f16: bool,
    /// Decode matrix-vector products of the formats with an integer dot (Q4_0, Q5_0, Q8_0) with
    /// f32 activations instead of Q8 ones.
    pub no_q8_acts: bool,
    /// Force the kernel layout (tests and benchmarks: e.g. the hardware layout on a software
    /// GPU, to test it without a GPU); `None`: by the adapter ([`GpuContext::is_software`]).
    pub layout: Option<GpuLayout>,
    /// Do not use subgroup operations even where the device has them (tests of the fallback).
    pub no_subgroups: bool,
    /// Skip the self-check a model load runs on the GPU first (`crate::selfcheck`).
    pub skip_self_check: bool,
    /// Corrupt one result of the self-check (tests of the fallback to the CPU).
    #[doc(hidden)]
    pub self_check_fault: bool,
    /// Corrupt one result of the full-size layer check only (`selfcheck::check_layer`): a bug
    /// that the small shapes do not show.
    #[doc(hidden)]
    pub full_size_fault: bool,
}

fn gpu_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::DeviceLost, msg)
}

/// No GPU to be had here (no WebGPU, no adapter, no device).
fn unavailable(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::GpuUnavailable, msg)
}

/// An error's text in one line, without the `JsValue(...)` wrapping wgpu gives browser errors.
fn plain(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    let text = text.strip_prefix("JsValue(").map_or(text.as_str(), |t| t.strip_suffix(')').unwrap_or(t));
    text.lines().next().unwrap_or_default().trim().to_string()
}

fn adapter_name(info: &wgpu::AdapterInfo) -> &str {
    if info.name.is_empty() {
        "an unnamed adapter"
    } else {
        &info.name
    }
}

impl GpuContext {
    pub async fn new(opts: &GpuOptions) -> Result<GpuContext> {
        #[cfg(target_arch = "wasm32")]
        {
            let has_gpu = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
                .ok()
                .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok())
                .is_some_and(|g| !g.is_undefined() && !g.is_null());
            if !has_gpu {
                return Err(unavailable("WebGPU is not available here (navigator.gpu is missing)"));
            }
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = if cfg!(target_arch = "wasm32") { wgpu::Backends::BROWSER_WEBGPU } else { wgpu::Backends::VULKAN };
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| unavailable(format!("no GPU adapter found: {}", plain(e))))?;
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        if let Some(cap) = opts.max_binding_bytes {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        let mut features = wgpu::Features::empty();
        let have = adapter.features();
        if have.contains(wgpu::Features::SHADER_F16) && !opts.no_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        if have.contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // Natively only: WGSL in browsers needs `enable subgroups;`, which wgpu's shader
        // front end does not take yet, so the web build never asks for them.
        let subgroups = cfg!(not(target_arch = "wasm32")) && !opts.no_subgroups && have.contains(wgpu::Features::SUBGROUP);
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("browser-llm"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| unavailable(format!("the GPU device request failed on {}: {}", adapter_name(&info), plain(e))))?;
        let failed: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        let keep = |slot: &Arc<Mutex<Option<Error>>>, e: Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert(e);
        };
        let slot = failed.clone();
        device.set_device_lost_callback(move |reason, msg| {
            // A lost device explains every error reported before the loss was.
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(gpu_err(match msg.trim() {
                "" => format!("the GPU device was lost ({reason:?})"),
                m => format!("the GPU device was lost ({reason:?}: {m})"),
            }));
        });
        let slot = failed.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            keep(&slot, match e {
                wgpu::Error::OutOfMemory { .. } => gpu_err("the GPU ran out of memory"),
                wgpu::Error::Validation { description, .. } => {
                    Error::internal(format!("GPU validation error (a bug: please report it): {description}"))
                }
                wgpu::Error::Internal { description, .. } => gpu_err(format!("the GPU failed: {description}")),
            });
        }));
        let layout = opts.layout.unwrap_or(if is_software(&info) { GpuLayout::Software } else { GpuLayout::Hardware });
        Ok(GpuContext { device, queue, limits, features, info, layout, subgroups, failed })
    }

    /// The first failure of the device so far, if any: lost, out of memory, or an error WebGPU
    /// reported for one of our calls.
    pub fn check(&self) -> Result<()> {
        let first = self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match first {
            None => Ok(()),
            Some(e) if e.code == ErrorCode::DeviceLost => Err(e),
            Some(e) => {
                // Natively, calls on a destroyed device fail validation before wgpu reports the
                // loss (at its next poll, once the queue is empty): let it, so the error says what
                // happened. (Browsers report no errors for calls on a lost device.)
                #[cfg(not(target_arch = "wasm32"))]
                let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
                Err(self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or(e))
            }
        }
    }

    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// A CPU implementation of WebGPU/Vulkan (SwiftShader, lavapipe/llvmpipe): correct, but
    /// slower than the CPU backend, so `backend: "auto"` does not pick it.
    pub fn is_software(&self) -> bool {
        is_software(&self.info)
    }

    /// Adapter, driver and API, as precise as the platform tells, and the kernels chosen for it
    /// (f16, subgroups, layout): what a self-check verdict is remembered under.
    pub fn identity(&self) -> String {
        let i = &self.info;
        format!(
            "{} | {} {} | {:?} {:?} {:x}:{:x} | f16 {} | subgroups {} | {}",
            i.name, i.driver, i.driver_info, i.backend, i.device_type, i.vendor, i.device, self.has_f16(), self.subgroups, self.layout.name()
        )
    }

    /// One line for logs and the CLI: adapter name, backend, device type, f16, subgroups, layout.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}{}{}, {} layout)",
            adapter_name(&self.info),
            self.info.backend,
            self.info.device_type,
            if self.has_f16() { ", shader-f16" } else { "" },
            if self.subgroups { ", subgroups" } else { "" },
            self.layout.name()
        )
    }
}

fn is_software(i: &wgpu::AdapterInfo) -> bool {
    let text = format!("{} {} {}", i.name, i.driver, i.driver_info).to_lowercase();
    i.device_type == wgpu::DeviceType::Cpu || ["swiftshader", "llvmpipe", "lavapipe", "software"].iter().any(|s| text.contains(s))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// An invalid call (a buffer past the device's limit) is reported asynchronously by WebGPU:
    /// the next check fails with a typed error, and so does every later one.
    #[test]
    fn errors_webgpu_reports_later_fail_the_next_check() {
        let ctx = match crate::block_on(GpuContext::new(&GpuOptions::default())) {
            Ok(c) => c,
            Err(e) if std::env::var_os("BROWSER_LLM_REQUIRE_GPU").is_none() => {
                eprintln!("skipped: {}", e.message);
                return;
            }
            Err(e) => panic!("{}", e.message),
        };
        ctx.check().unwrap();
        let _bad = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("too big"),
            size: ctx.limits.max_buffer_size.saturating_add(4),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
        for _ in 0..2 {
            let e = ctx.check().unwrap_err();
            assert_eq!(e.code, ErrorCode::Internal, "{}", e.message);
            assert!(e.message.contains("GPU validation error"), "{}", e.message);
        }
    }
}
