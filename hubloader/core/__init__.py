"""The bottom layer: model metadata types, errors, settings and host folder layouts. Imports nothing of ours above it."""
