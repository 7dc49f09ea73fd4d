"""A shared cache many machines fetch through (a network folder or an S3-compatible store)."""
