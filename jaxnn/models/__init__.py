"""Compositions that are layers too: `Sequential`, the graph `Model`, and the `summary` table."""
from jaxnn.models.graph import Model
from jaxnn.models.sequential import Sequential
from jaxnn.models.summary import summary
