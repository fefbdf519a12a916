"""`lull serve`: the ingestion API, the live session timer, the read API."""
