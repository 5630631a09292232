"""`python -m zoo`: every model family of the zoo, one line each."""
from zoo.registry import table

print(table())
