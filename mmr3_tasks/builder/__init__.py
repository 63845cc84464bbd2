"""`mmr3 build`: the MM-R³ benchmark and its training splits, rebuilt from the public sources."""
