// Elementary functions with defined behaviour everywhere (WGSL leaves `tanh` of large inputs and
// `sin`/`cos` far from zero imprecise on some adapters).

fn tanh_s(y: f32) -> f32 {
    let e = exp(-2.0 * abs(y));
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, y >= 0.0);
}

// GELU, tanh approximation (ggml `ggml_gelu_f32`).
fn gelu_f32(x: f32) -> f32 {
    return 0.5 * x * (1.0 + tanh_s(0.7978846 * x * (1.0 + 0.044715 * x * x)));
}

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

// Reduce an angle to [-pi, pi] (Cody-Waite, two-part 2*pi) before sin/cos.
fn reduce_angle(t: f32) -> f32 {
    let k = round(t * 0.15915494);
    return (t - k * 6.28125) - k * 0.0019353072;
}
