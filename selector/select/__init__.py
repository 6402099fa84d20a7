"""Stage 3, select: qualify, deduplicate and budget documents into a reweighting manifest."""
