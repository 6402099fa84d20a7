"""Shared by every stage: the typed config, errors, paths, label files, metrics and seeded keys."""
