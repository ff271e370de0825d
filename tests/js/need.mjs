// Preconditions of tests that need something the environment may lack (a model path).

/**
 * A test's `skip` option: `false` when `ok`, else the reason it skips. Under
 * BROWSER_LLM_REQUIRE_ALL=1 (CI) a test that would skip fails the run instead: node's runner
 * counts a skip as a pass, so a missing model must not turn a test run green.
 */
export function skipUnless(ok, why) {
  if (ok) return false;
  if (process.env.BROWSER_LLM_REQUIRE_ALL === "1") {
    throw new Error(`${why}: with BROWSER_LLM_REQUIRE_ALL=1 a test may not skip`);
  }
  return why;
}
