"""Shared by every stage: the typed config, errors, paths and file hashes, label files, metrics, seeded keys, fastText loading."""
