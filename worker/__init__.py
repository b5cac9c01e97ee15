"""Streaming image-moderation worker: Kafka in, Azure AI Vision analysis, policy, three routes."""

__version__ = "0.1.0"
