"""The error every unusable input of `mmr3 report` and `mmr3 score` raises, and how a bad value reads in it."""

from __future__ import annotations

import json

from mmr3_tasks.errors import MMR3Error


class ReportInputError(MMR3Error):
    """One unusable input of `mmr3 report` or `mmr3 score`: a results file, a folder, a samples line.

    The message starts with the input (`path` or `path:line`), says what is wrong and how to fix
    it. `mmr3 report` names each bad input and reports the good ones; `mmr3 score` stops at the
    first.
    """


def json_kind(value: object) -> str:
    """How a bad JSON value reads in a message: `null`, `a number (3)`, `a string ("cat")`."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    kind = {int: "number", float: "number", str: "string", list: "list", dict: "mapping"}.get(type(value), "value")
    text = json.dumps(value)
    return f"a {kind} ({text if len(text) <= 40 else text[:37] + '...'})"
