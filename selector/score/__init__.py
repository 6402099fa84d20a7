"""Stage 2, score: the cascade (fastText gate, then the embedding head) over shards, locally or on Ray."""
