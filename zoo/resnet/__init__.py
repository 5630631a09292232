"""ResNet model of the zoo."""
