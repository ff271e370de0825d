//! Native benchmark of the GPU backend's decode (one-token) matrix-vector products on the shapes
//! of the default model (Gemma 3 270M): wall time per product including one submit and the
//! readback, minus the time of an empty submit+readback. Runs on whatever adapter wgpu picks (a
//! real GPU where there is one; Mesa lavapipe otherwise: numbers for regressions only).
//! `cargo run --release --example gpu_bench [reps]`. Asserts nothing.

use std::sync::Arc;
use std::time::Instant;

use browser_llm::backend::gpu::{GpuBackend, GpuOptions};
use browser_llm::backend::{Backend, TensorBytes};
use browser_llm::gguf::TensorInfo;
use browser_llm::quant::random::{random_row, Rng};
use browser_llm::quant::GgmlType;

fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: pipelines, pool
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut b = GpuBackend::new_blocking(&GpuOptions::default()).expect("a GPU adapter");
    println!("device: {}", b.ctx.describe());
    let mut rng = Rng::new(1);
    let one = b.upload_act(&[1.0], 1, 1).unwrap();
    let empty = time_ms(reps, || {
        browser_llm::block_on(b.read(&one)).unwrap();
    });
    println!("empty submit + readback: {empty:.2} ms");
    // (name, type, rows, cols): the model's output head, then one layer's projections.
    let shapes = [
        ("output head", GgmlType::Q8_0, 262144, 640),
        ("ffn_gate/up", GgmlType::Q5_0, 2048, 640),
        ("ffn_down", GgmlType::Q6_K, 640, 2048),
        ("attn_q", GgmlType::Q5_0, 1024, 640),
        ("attn_output", GgmlType::Q4_K, 640, 1024),
        ("attn_v", GgmlType::Q8_0, 256, 640),
    ];
    for (name, ty, rows, cols) in shapes {
        // Distinct rows cost time to generate for the head; repeat a few random rows instead.
        let few: Vec<Vec<u8>> = (0..16).map(|_| random_row(ty, cols, &mut rng)).collect();
        let bytes: Vec<u8> = (0..rows).flat_map(|r| few[r % 16].iter().copied()).collect();
        let n = bytes.len();
        let info = TensorInfo { name: name.into(), dims: vec![cols as u64, rows as u64], ty, offset: 0, n_bytes: n as u64 };
        let w = b.weight(&info, TensorBytes::new(Arc::new(bytes), 0..n)).unwrap();
        let x = b.upload_act(&rng.acts(cols, 1.0), 1, cols).unwrap();
        // Formats with an integer dot: Q8 activations (the default) and f32 activations.
        let modes: &[bool] = if browser_llm::backend::gpu::ops::has_dot_q8(ty) { &[true, false] } else { &[true] };
        for &q8 in modes {
            b.q8_acts = q8;
            let ms = time_ms(reps, || {
                let y = b.linear(&x, &w, None).unwrap();
                browser_llm::block_on(b.read(&y)).unwrap();
            }) - empty;
            let gbs = n as f64 / (ms * 1e-3) / 1e9;
            let acts = if modes.len() == 1 { "" } else if q8 { "q8 acts" } else { "f32 acts" };
            println!("{name:12} {ty:5} {rows:>6}x{cols:<5} {:>7.1} MB {ms:>8.2} ms {gbs:>6.2} GB/s {acts}", n as f64 / 1e6);
        }
        b.q8_acts = true;
    }
}
