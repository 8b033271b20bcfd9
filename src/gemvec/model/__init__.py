"""The EmbeddingGemma model: config, checkpoint loading, encoder and head."""
