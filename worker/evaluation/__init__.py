"""Evaluation and calibration: how a policy and an analyzer perform on labeled images and reviewers' verdicts.

Pure metrics (``confusion``, ``diff``, ``sweep``, ``suggest``, ``calibration``) and the I/O around them
(labeled sets, the analysis cache, collecting analyses, the report, reading review decisions); see
docs/evaluate.md.
"""
