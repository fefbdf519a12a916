"""The embedded store on DuckDB: schema, projects and settings, and one query per figure."""
