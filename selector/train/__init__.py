"""Train a classifier (teacher on embeddings, fastText student) from seeds and labels."""
