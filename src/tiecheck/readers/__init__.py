"""Readers: each turns one on-disk format into the neutral ``tiecheck.model`` records."""
