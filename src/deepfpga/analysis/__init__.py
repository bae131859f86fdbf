"""Analyses of a graph that need no weights: complexity (paper §4)."""
