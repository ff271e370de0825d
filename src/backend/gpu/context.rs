//! The wgpu context: adapter and device selection with the adapter's real limits and optional
//! features, and device-loss tracking.
//!
//! Natively wgpu runs on Vulkan (Mesa lavapipe in tests); on wasm32 on the browser's WebGPU.
//! `shader-f16` and `timestamp-query` are requested when the adapter has them and never
//! required. Every failure (no WebGPU, no adapter, a refused device, a lost device) is an
//! [`ErrorCode::DeviceLost`] error whose message says what happened, so a caller in
//! `backend: "auto"` can fall back to the CPU backend and show why.

use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorCode, Result};

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub info: wgpu::AdapterInfo,
    /// Set by the device-lost callback.
    lost: Arc<Mutex<Option<String>>>,
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
}

fn gpu_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::DeviceLost, msg)
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
                return Err(gpu_err("WebGPU is not available here (navigator.gpu is missing)"));
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
            .map_err(|e| gpu_err(format!("no GPU adapter found: {e}")))?;
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
            .map_err(|e| gpu_err(format!("the GPU device request failed on {}: {e}", info.name)))?;
        let lost = Arc::new(Mutex::new(None));
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *l2.lock().unwrap() = Some(format!("{reason:?}: {msg}"));
        });
        Ok(GpuContext { device, queue, limits, features, info, lost })
    }

    /// An error if the device was lost.
    pub fn check_lost(&self) -> Result<()> {
        match &*self.lost.lock().unwrap() {
            Some(m) => Err(gpu_err(format!("the GPU device was lost ({m})"))),
            None => Ok(()),
        }
    }

    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// A CPU implementation of WebGPU/Vulkan (SwiftShader, lavapipe/llvmpipe): correct, but
    /// slower than the CPU backend, so `backend: "auto"` does not pick it.
    pub fn is_software(&self) -> bool {
        let i = &self.info;
        let text = format!("{} {} {}", i.name, i.driver, i.driver_info).to_lowercase();
        i.device_type == wgpu::DeviceType::Cpu
            || ["swiftshader", "llvmpipe", "lavapipe", "software"].iter().any(|s| text.contains(s))
    }

    /// One line for logs and the CLI: adapter name, backend, device type, f16.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}{})",
            if self.info.name.is_empty() { "unnamed adapter" } else { &self.info.name },
            self.info.backend,
            self.info.device_type,
            if self.has_f16() { ", shader-f16" } else { "" }
        )
    }
}
