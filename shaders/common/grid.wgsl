// Dispatches wider than the 65535-workgroup limit of one dimension are split over x and y;
// this is the flat workgroup index.
fn flat_wg(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}
