"""The tiny language the Lab 07 model speaks: a procedural grammar with local rules and long-range facts.

A document starts with ``<s>`` and is a run of sentences of three kinds:

* a **fact**, ``ana 's hat is red .``: each name owns one object (no two names the same one) of
  one colour for the whole document. The first time a name's fact appears, its object and colour
  are news; every later time they can be predicted only by looking back at the first, up to 250
  tokens earlier (this is what a quantized KV cache can take away);
* an **animal** sentence, ``the big dogs see a frog .``: the verb agrees with its subject
  (``dog runs`` / ``dogs run``);
* a **sum**, ``3 plus 4 is 7 .``: the digit after ``is`` is ``(a + b) mod 10``.

Every choice comes from a ``random.Random`` seeded by the caller, so a seed names a corpus
exactly: training text and held-out text differ only by their seeds.
"""

from __future__ import annotations

import random

NAMES = ("ana", "ben", "cal", "dan", "eva", "fox", "gil", "hal")
COLOURS = ("red", "blue", "green", "gold", "gray", "pink")
OBJECTS = ("hat", "cup", "box", "key", "map", "pen", "bag", "jar")
ADJECTIVES = ("big", "small", "old", "new")
NOUNS = ("dog", "cat", "bird", "fish", "frog")
PLURALS = ("dogs", "cats", "birds", "fishes", "frogs")
VERBS = ("runs", "sees", "jumps", "eats")
PLURAL_VERBS = ("run", "see", "jump", "eat")
DIGITS = tuple(str(d) for d in range(10))
FUNCTION_WORDS = ("<s>", ".", "a", "'s", "is", "the", "plus")

VOCAB: tuple[str, ...] = FUNCTION_WORDS + NAMES + COLOURS + OBJECTS + ADJECTIVES + NOUNS + PLURALS + VERBS + PLURAL_VERBS + DIGITS
"""Every token, in id order: 61 words. Token ``i`` is ``VOCAB[i]``; ``<s>`` (id 0) starts a document."""

TOKEN_ID = {word: index for index, word in enumerate(VOCAB)}
BOS = TOKEN_ID["<s>"]


def _fact(owned: dict[str, tuple[str, str]], name: str) -> list[str]:
    thing, colour = owned[name]
    return [name, "'s", thing, "is", colour, "."]


def _animal(rng: random.Random) -> list[str]:
    def noun_phrase() -> tuple[list[str], bool]:
        plural = rng.random() < 0.5
        words = ["the" if rng.random() < 0.6 else "a"] if not plural else ["the"]
        if rng.random() < 0.5:
            words.append(rng.choice(ADJECTIVES))
        words.append(rng.choice(PLURALS if plural else NOUNS))
        return words, plural

    subject, plural = noun_phrase()
    verb = rng.randrange(len(VERBS))
    sentence = subject + [PLURAL_VERBS[verb] if plural else VERBS[verb]]
    if rng.random() < 0.6:
        sentence += noun_phrase()[0]
    return sentence + ["."]


def _sum(rng: random.Random) -> list[str]:
    a, b = rng.randrange(10), rng.randrange(10)
    return [str(a), "plus", str(b), "is", str((a + b) % 10), "."]


def document(rng: random.Random, length: int) -> list[int]:
    """One document of exactly ``length`` token ids: ``<s>``, then sentences, cut at ``length``.

    Each name gets an object and a colour for the whole document. New facts come early (each
    name is introduced once); facts repeat only for names already introduced.
    """
    things = list(OBJECTS)
    rng.shuffle(things)
    owned = {name: (thing, rng.choice(COLOURS)) for name, thing in zip(NAMES, things)}
    untold = list(NAMES)
    rng.shuffle(untold)
    told: list[str] = []
    words = ["<s>"]
    while len(words) < length:
        roll = rng.random()
        if untold and (roll < 0.3 or not told):
            name = untold.pop()
            told.append(name)
            words += _fact(owned, name)
        elif told and roll < 0.65:
            words += _fact(owned, rng.choice(told))
        elif roll < 0.85:
            words += _animal(rng)
        else:
            words += _sum(rng)
    return [TOKEN_ID[word] for word in words[:length]]


def documents(seed: int, count: int, length: int) -> list[list[int]]:
    """``count`` documents of ``length`` tokens from one seeded generator."""
    rng = random.Random(seed)
    return [document(rng, length) for _ in range(count)]


def decode(ids: list[int]) -> str:
    """Token ids as text: ``"<s> ana 's hat is red . 3 plus 4 is 7 ."``."""
    return " ".join(VOCAB[i] for i in ids)
