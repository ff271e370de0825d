// One-range HTTP Range support for the Node servers that serve model files (pkg-scripts/serve.mjs,
// tests/bench/run.mjs).

/**
 * Apply the request's `Range` (one range, `bytes=a-b`, `a-` or `-n`) to a response for a file of
 * `size` bytes: sets the status (206), Content-Range and Content-Length, and returns the inclusive
 * `{ start, end }` to send; on an unsatisfiable range answers 416 itself and returns null.
 */
export function applyRange(req, res, size) {
  let start = 0;
  let end = size - 1;
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
  if (range) {
    if (range[1] === "") {
      start = Math.max(0, size - Number(range[2]));
    } else {
      start = Number(range[1]);
      if (range[2] !== "") end = Math.min(end, Number(range[2]));
    }
    if (start > end || start >= size) {
      res.statusCode = 416;
      res.setHeader("Content-Range", `bytes */${size}`);
      res.end();
      return null;
    }
    res.statusCode = 206;
    res.setHeader("Content-Range", `bytes ${start}-${end}/${size}`);
  }
  res.setHeader("Content-Length", end - start + 1);
  return { start, end };
}
