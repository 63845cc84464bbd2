"""`mmr3 build` (being written)."""


def register(sub) -> None:
    pass
