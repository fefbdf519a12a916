"""lull: session analytics."""
