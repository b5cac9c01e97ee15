"""Observability: the Prometheus metric catalogue, drift detection, the ops server (probes) and JSON logs."""
