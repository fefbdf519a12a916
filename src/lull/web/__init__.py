"""The web pages of `lull serve`: sign-in, settings, session board, profiles, events."""
