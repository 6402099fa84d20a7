"""Stage 1, read: documents from WARC/WET, JSONL/JSON and Parquet shards, and selected ones read back again."""
