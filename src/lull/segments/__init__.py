"""Segments: saved definitions of profiles (docs/segments.md).

`definition` reads and checks a definition, `query` compiles a past-behaviour one to
one DuckDB query, `live` fires live segments' webhooks as events are stored.
"""
