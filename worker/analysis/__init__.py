"""Analysis: the Analyzer seam, Azure Image Analysis, the offline model, and the call discipline around them
(quota limiter, circuit breaker, retries with backoff)."""
