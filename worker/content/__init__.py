"""Known content: the worker-side image fetch behind its SSRF guard, content hashes, hash banks and the
analysis cache."""
