"""Kept only for `NONE`, which `server/live.py` and `spark/bucket.py` import from here.

The set-wise import engine that lived here was replaced by the live engine's vectorized
form (`engine/vector.py`, driven over a whole import by `engine/replay.py`; issue 10).
New code imports `NONE` from `lull.engine.state`.
"""

from lull.engine.state import NONE as NONE
