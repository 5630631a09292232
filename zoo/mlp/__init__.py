"""mlp model of the zoo."""
