"""Stage 4, export: materialize a manifest's documents, and write what trainers load."""
