"""Ground truths from source labels: MIT Indoor scene classes and GLDv2 landmark categories."""

from __future__ import annotations

import re
from urllib.parse import unquote

# MIT Indoor 67's class folder names -> readable ground truths, the plain spelling first. The
# paper scored the raw names ("fastfood_restaurant"), which a free-text description almost never
# contains; these spellings are what a description would say. Acc is a substring test, so a
# synonym must not be another class's answer and must not be short enough to hide inside other
# words ("lab" in "label", "cell" in "cellphone"): tests/test_build_sources.py checks both.
MIT_INDOOR_ANSWERS: dict[str, tuple[str, ...]] = {
    "airport_inside": ("airport", "terminal"),
    "artstudio": ("art studio",),
    "auditorium": ("auditorium",),
    "bakery": ("bakery",),
    "bar": ("bar",),
    "bathroom": ("bathroom",),
    "bedroom": ("bedroom",),
    "bookstore": ("bookstore", "book store", "bookshop"),
    "bowling": ("bowling alley", "bowling"),
    "buffet": ("buffet",),
    "casino": ("casino",),
    "children_room": ("children room", "children's room", "kids room", "playroom"),
    "church_inside": ("church", "cathedral", "chapel"),
    "classroom": ("classroom", "class room"),
    "cloister": ("cloister",),
    "closet": ("closet", "wardrobe"),
    "clothingstore": ("clothing store", "clothes store", "boutique"),
    "computerroom": ("computer room", "computer lab"),
    "concert_hall": ("concert hall",),
    "corridor": ("corridor", "hallway"),
    "deli": ("deli", "delicatessen"),
    "dentaloffice": ("dental office", "dentist"),
    "dining_room": ("dining room",),
    "elevator": ("elevator",),
    "fastfood_restaurant": ("fastfood restaurant", "fast food restaurant", "fast-food restaurant"),
    "florist": ("florist", "flower shop"),
    "gameroom": ("game room", "games room"),
    "garage": ("garage",),
    "greenhouse": ("greenhouse",),
    "grocerystore": ("grocery store", "grocery", "supermarket"),
    "gym": ("gym", "fitness"),
    "hairsalon": ("hair salon", "salon", "hairdresser"),
    "hospitalroom": ("hospital room", "hospital"),
    "inside_bus": ("bus",),
    "inside_subway": ("subway car", "subway train"),
    "jewelleryshop": ("jewellery shop", "jewelry shop", "jewelry store", "jewellery store"),
    "kindergarden": ("kindergarten", "kindergarden"),
    "kitchen": ("kitchen",),
    "laboratorywet": ("laboratory",),
    "laundromat": ("laundromat", "laundry"),
    "library": ("library",),
    "livingroom": ("living room", "livingroom", "lounge"),
    "lobby": ("lobby",),
    "locker_room": ("locker room",),
    "mall": ("mall", "shopping center", "shopping centre"),
    "meeting_room": ("meeting room", "conference room"),
    "movietheater": ("movie theater", "movie theatre", "cinema"),
    "museum": ("museum",),
    "nursery": ("nursery",),
    "office": ("office",),
    "operating_room": ("operating room", "operating theatre", "surgery"),
    "pantry": ("pantry",),
    "poolinside": ("indoor pool", "swimming pool"),
    "prisoncell": ("prison cell", "jail cell"),
    "restaurant": ("restaurant",),
    "restaurant_kitchen": ("restaurant kitchen",),
    "shoeshop": ("shoe shop", "shoe store"),
    "stairscase": ("staircase", "stairs", "stairway"),
    "studiomusic": ("music studio", "recording studio"),
    "subway": ("subway", "subway station", "metro station"),
    "toystore": ("toy store", "toy shop"),
    "trainstation": ("train station", "railway station"),
    "tv_studio": ("tv studio", "television studio"),
    "videostore": ("video store", "video shop"),
    "waitingroom": ("waiting room",),
    "warehouse": ("warehouse",),
    "winecellar": ("wine cellar", "cellar"),
}


def scene_answers(label: str) -> list[str]:
    """Readable ground truths of an MIT Indoor class; an unknown class gets its name with spaces."""
    known = MIT_INDOOR_ANSWERS.get(label)
    if known:
        return list(known)
    readable = " ".join(label.replace("_", " ").split())
    return [readable] if readable else []


_CATEGORY = re.compile(r"Category:(.*)$")
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")


def landmark_name(category: str) -> str:
    """A GLDv2 category (a Wikimedia Commons URL such as `.../wiki/Category:Tab%C3%A1n`, or a bare
    name) as a readable name: URL-decoded (repeatedly, some are double-encoded), underscores to
    spaces. `Category:Tab%C3%A1n` -> `Tabán`."""
    text = category.strip()
    match = _CATEGORY.search(text)
    if match:
        text = match.group(1)
    elif "://" in text:
        text = text.rstrip("/").rsplit("/", 1)[-1]
    for _ in range(3):  # "%2528" -> "%28" -> "("
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return " ".join(text.replace("_", " ").split())


def landmark_answers(category: str) -> list[str]:
    """The landmark's name, and the name without a trailing disambiguation in parentheses
    ("St. Mary's Church (Gdańsk)" -> also "St. Mary's Church")."""
    name = landmark_name(category)
    if not name:
        return []
    short = _PARENTHETICAL.sub("", name)
    return [name] if not short or short == name else [name, short]
