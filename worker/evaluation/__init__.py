"""Understanding decisions before trusting them: evaluation on labeled images, calibration from reviewers,
shadow policies, the analyses topic and replay.

Pure metrics (``confusion``, ``decision_diff``, ``sweep``, ``suggest``, ``calibration``) and the I/O
around them (labeled sets, the analysis cache, collecting analyses, the report, reading review decisions, the
analyses topic); layer 2 (docs/architecture.md). See docs/evaluate.md and docs/replay.md.
"""
