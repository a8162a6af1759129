"""Data pipeline: manifests, audio I/O, features, tokenizers, batching and corpus builders."""
