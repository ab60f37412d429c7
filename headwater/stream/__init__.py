"""Streaming: topics (embedded log or Kafka) and stream apps that process micro-batches."""
