"""Stage 1, read: documents from WARC/WET, JSONL, Parquet and text shards, and back from a manifest."""
