"""`dtf models`: the registry as a table."""
