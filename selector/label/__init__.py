"""Labels: which documents to label (the sampling plan) and the LLM annotator."""
