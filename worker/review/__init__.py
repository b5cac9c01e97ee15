"""The review console: humans decide what the machine is unsure of (docs/review.md)."""
