"""The session rules (docs/sessions.md R1-R5) as pure code: state and events in, decisions out.

`exact` applies them event group by event group for one profile (the reference, and the
rare irregular profiles); `vector` applies them to a batch of arrivals of many profiles
at once with NumPy and hands irregular profiles to `exact` (the live server, the Spark
stream); `replay` drives `vector` over a whole arrival stream, batch by batch (`lull
import`).
"""
