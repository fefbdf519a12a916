"""Wire formats -> canonical events."""
