"""The demo voices' sentence grammar: seeded template sentences, each allowed in one set only.

Every utterance is a different template sentence, and the four sets (A/B x train/test) are
disjoint by construction: a salted hash of the text picks the only set a sentence may go to, so
the domains are unpaired and the test sets do not change with ``n_train``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

SPLITS = ("train", "test")

ADJ = ("quick", "brown", "lazy", "small", "big", "old", "young", "red", "green", "blue", "bright",
       "dark", "quiet", "loud", "warm", "cold", "soft", "heavy", "light", "happy", "tired", "busy",
       "clever", "gentle", "tall", "short", "round", "empty", "clean", "wild")
NOUN = ("fox", "dog", "cat", "bird", "horse", "teacher", "doctor", "farmer", "child", "baker",
        "driver", "sailor", "painter", "girl", "boy", "friend", "neighbour", "king", "queen",
        "captain", "student", "pilot", "singer", "writer")
THING = ("box", "book", "letter", "apple", "basket", "chair", "table", "lamp", "window", "door",
         "coat", "hat", "cup", "bottle", "key", "map", "bell", "ball", "boat", "kite", "clock",
         "bag", "ticket", "garden", "picture")
PLACE = ("river", "market", "station", "kitchen", "garden", "library", "village", "forest",
         "harbour", "school", "bridge", "mountain", "office", "beach", "park", "hill", "valley",
         "road")
VERB = ("found", "carried", "painted", "opened", "closed", "pushed", "pulled", "washed", "dropped",
        "bought", "sold", "moved", "cleaned", "fixed", "watched", "followed")
ADV = ("slowly", "quickly", "quietly", "carefully", "happily", "suddenly", "gently", "loudly",
       "early", "later")
TIME = ("this morning", "last night", "on monday", "after lunch", "before dinner", "in the spring",
        "at noon", "every day", "next week", "on friday", "in the evening", "at dawn")
NAME = ("anna", "peter", "maria", "john", "lucy", "tom", "sarah", "david", "emma", "paul", "kate",
        "mark", "alice", "james", "helen", "george")
NUM = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PREP = ("near", "behind", "beside", "under", "above", "inside", "across")
TEMPLATES = (
    "the {adj} {noun} {verb} the {adj} {thing} {prep} the {place}",
    "{name} {verb} a {adj} {thing} {time}",
    "a {adj} {noun} walked {adv} to the {place} {time}",
    "did the {noun} see the {adj} {thing} {prep} the {place}?",
    "please put the {thing} {prep} the {adj} {thing}",
    "{name} and {name} {verb} {num} {adj} {things}",
    "we {verb} the {thing} {adv} because the {noun} was {adj}",
    "the {noun} from the {place} has a {adj} {thing}",
    "{name} said the {place} is {adj} {time}",
    "my {adj} {noun} {verb} {num} {things} near the {place}",
    "where did {name} leave the {adj} {thing}?",
    "the {thing} was {adj} and the {place} was {adj}",
)


class _RandomWords(dict):
    """``str.format_map`` source that draws a fresh word for every placeholder occurrence."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        words = WORDS[key]
        return words[int(self.rng.integers(len(words)))]


WORDS = {"adj": ADJ, "noun": NOUN, "thing": THING, "place": PLACE, "verb": VERB, "adv": ADV,
         "time": TIME, "name": NAME, "num": NUM, "prep": PREP,
         "things": [t + ("es" if t.endswith(("x", "s", "ch")) else "s") for t in THING]}


def _sentence(rng: np.random.Generator) -> str:
    """One random template sentence (plain lower-case English, 7-11 words)."""
    return TEMPLATES[rng.integers(len(TEMPLATES))].format_map(_RandomWords(rng))


def _bucket(text: str, seed: int) -> int:
    """Which of the four sets (A train, A test, B train, B test) ``text`` may belong to."""
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % 4


def sentence_stream(domain: str, split: str, seed: int) -> Iterator[str]:
    """Endless seeded stream of distinct sentences that belong only to (domain, split)."""
    index = 2 * "AB".index(domain) + SPLITS.index(split)
    rng = np.random.default_rng([seed, index])
    seen: set[str] = set()
    while True:
        text = _sentence(rng)
        if text not in seen and _bucket(text, seed) == index:
            seen.add(text)
            yield text
