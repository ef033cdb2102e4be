// Upper bounds so that a hanging step fails the run instead of blocking CI.
export const TEST_TIMEOUT_MS = 60_000; // one scenario
export const HOOK_TIMEOUT_MS = 60_000; // starting provider + app (+ its 20 s health wait) + browser
