"""lenet model of the zoo."""
