"""lull on Apache Spark (the `spark` extra): the same session rules on a cluster."""
