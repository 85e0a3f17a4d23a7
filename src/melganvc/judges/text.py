"""Text normalisation for recognisers: one written form (lower case, no punctuation,
numbers as words) so that transcripts compare what was heard, not how it was spelt."""

from __future__ import annotations

import re
import unicodedata

# --- text normalisation -----------------------------------------------------------------------
# Two recognisers (or a recogniser and a human transcript) write the same words differently:
# Whisper writes "Mr. Smith paid $5, 10%" where pocketsphinx says "mister smith paid five
# dollars ten percent". CER/WER should count what was heard, not how it was spelt, so both
# sides go to one form: lower case, no punctuation, numbers as (cardinal) words.

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"),
           (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "ok": "okay",
                  "vs": "versus"}
_FILLERS = frozenset({"uh", "um", "uhm", "umm", "hmm", "hm", "mm", "mhm", "ah", "er", "erm"})
_MARKUP = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)")  # <sil> [noise] (laughs) [BLANK_AUDIO]
_NUMBER = re.compile(r"(\$)?(\d+)(?:\.(\d+))?(st|nd|rd|th)?(%)?")
_NON_WORD = re.compile(r"[^a-z0-9' ]+")
_STRAY_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")


def number_words(value: int) -> str:
    """Cardinal English words of a non-negative integer (``2024`` -> ``two thousand twenty
    four``); no "and", as recognisers that spell numbers out write them."""
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    for scale, word in _SCALES:
        if value >= scale:
            high, rest = divmod(value, scale)
            return f"{number_words(high)} {word}" + (f" {number_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _ordinal(words: str) -> str:
    """``twenty one`` -> ``twenty first``; ``forty`` -> ``fortieth``."""
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _spell_number(match: re.Match[str]) -> str:
    dollar, whole, fraction, suffix, percent = match.groups()
    if len(whole) > 15:  # a digit string, not a quantity: read digit by digit
        words = " ".join(_ONES[int(d)] for d in whole)
    else:
        words = number_words(int(whole))
    if fraction is not None:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    elif suffix is not None:
        words = _ordinal(words)
    if percent:
        words += " percent"
    if dollar:
        words += " dollar" if whole == "1" and fraction is None else " dollars"
    return f" {words} "


def normalize_text(text: str) -> str:
    """One spelling for what a recogniser heard, so CER/WER count recognition, not style.

    Lower case; accents folded (``café`` -> ``cafe``); markup and fillers dropped (``<sil>``,
    ``[noise]``, ``(laughs)``, ``um``); numbers written as words (``3`` -> ``three``,
    ``1,200`` -> ``one thousand two hundred``, ``21st`` -> ``twenty first``, ``2.5`` -> ``two
    point five``, ``10%`` -> ``ten percent``, ``$5`` -> ``five dollars``); a few abbreviations
    spelt out (``Mr.`` -> ``mister``, ``Dr.`` -> ``doctor``, ``OK`` -> ``okay``); ``&`` ->
    ``and``; hyphens and other punctuation become spaces, apostrophes inside words stay
    (``don't``). Idempotent: normalising twice changes nothing.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _MARKUP.sub(" ", text).replace("&", " and ")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,200 -> 1200
    text = _NUMBER.sub(_spell_number, text)
    text = _STRAY_APOSTROPHE.sub(" ", _NON_WORD.sub(" ", text.replace("\u2019", "'")))
    words = [_ABBREVIATIONS.get(w, w) for w in text.split()]
    return " ".join(w for w in words if w not in _FILLERS)
