"""Workflows, images and lockfiles: which models they need, and resolving those to files."""
