"""Synthetic copies of published datasets, laid out and encoded as their publishers distribute them (for tests)."""
