"""Understanding decisions before trusting them: shadow policies, the analyses topic and replay.

Layer 2 (docs/architecture.md): built on the domain and on ``worker.kafka``'s connection options; the
composition root wires the side-record sources into the moderator, the command line runs replay.
"""
