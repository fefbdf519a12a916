"""The session rules (docs/sessions.md R1-R5) as pure code: state and events in, decisions out.

`exact` applies them event group by event group for one profile (the server, and the rare
irregular profiles of a bulk import); `columnar` applies them to a whole import at once with
NumPy and hands irregular profiles to `exact`.
"""
