"""Model loading, input preprocessing and the dynamic batcher."""
