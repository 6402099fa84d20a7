"""Stage 5, audit: the audit report, the static audit page, and evaluation against labels."""
