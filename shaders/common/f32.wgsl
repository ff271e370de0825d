// F32 weights: 4 bytes per element.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let i = (rowb >> 2u) + e;
    return vec4<f32>(bitcast<f32>(wq_at(i)), bitcast<f32>(wq_at(i + 1u)), bitcast<f32>(wq_at(i + 2u)), bitcast<f32>(wq_at(i + 3u)));
}
fn dq1(rowb: u32, e: u32) -> f32 {
    return bitcast<f32>(wq_at((rowb >> 2u) + e));
}
