"""Stage 5, audit: the audit report, the static audit page, evaluation against labels, the keyword baseline."""
