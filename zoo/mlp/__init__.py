"""The MLP hello-world model of the zoo."""
from zoo.registry import Family

FAMILY = Family("mlp", "tensorrtx's mlp hello-world: one linear layer", "zoo.mlp.model:MLPModel",
                variants=("mlp",), tasks=("regress",))
