"""Leadline services: each a separate process; they never import each other."""
