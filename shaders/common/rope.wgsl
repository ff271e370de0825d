// The rotary angle of pair k at position `pos` (rope.wgsl, qk_prep.wgsl): theta_k = freq_scale *
// pos * theta_scale^k / freq_factor_k, the power taken by repeated f32 multiplication as ggml
// does, reduced to [-pi, pi] (`ff` is 1.0 without freq factors: the division is then exact).

#include "common/math.wgsl"

fn rope_angle(pos: u32, k: u32, theta_scale: f32, freq_scale: f32, ff: f32) -> f32 {
    return rope_angle_f(f32(pos), k, theta_scale, freq_scale, ff);
}

// rope_angle at a position given as f32 (rope_shift.wgsl turns keys by a negative one).
fn rope_angle_f(pos: f32, k: u32, theta_scale: f32, freq_scale: f32, ff: f32) -> f32 {
    var theta = pos;
    for (var i = 0u; i < k; i++) {
        theta *= theta_scale;
    }
    return reduce_angle(freq_scale * (theta / ff));
}
