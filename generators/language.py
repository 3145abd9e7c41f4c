"""Language statistics of text: the script of each letter, a target-script ratio, script
switches, and the language of a text (script first, py3langid where a script is shared).

Scripts are named after the first word of a letter's Unicode name, lower-cased (``latin``,
``cyrillic``, ``hiragana``…), with ``han`` for CJK ideographs and ``hangul`` for Hangul
syllables only; Hangul jamo are ``hangul-jamo``.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Language:
    """A language synthrank can target: its py3langid code, English name and scripts."""

    code: str
    name: str
    scripts: frozenset[str]


def _language(code: str, name: str, *scripts: str) -> Language:
    return Language(code, name, frozenset(scripts))


LANGUAGES: dict[str, Language] = {language.code: language for language in (
    _language("ko", "Korean", "hangul"),
    _language("ja", "Japanese", "hiragana", "katakana", "han"),
    _language("zh", "Chinese", "han"),
    _language("en", "English", "latin"),
    _language("fr", "French", "latin"),
    _language("de", "German", "latin"),
    _language("es", "Spanish", "latin"),
    _language("it", "Italian", "latin"),
    _language("pt", "Portuguese", "latin"),
    _language("nl", "Dutch", "latin"),
    _language("pl", "Polish", "latin"),
    _language("tr", "Turkish", "latin"),
    _language("vi", "Vietnamese", "latin"),
    _language("id", "Indonesian", "latin"),
    _language("ru", "Russian", "cyrillic"),
    _language("uk", "Ukrainian", "cyrillic"),
    _language("ar", "Arabic", "arabic"),
    _language("fa", "Persian", "arabic"),
    _language("hi", "Hindi", "devanagari"),
    _language("th", "Thai", "thai"),
    _language("el", "Greek", "greek"),
    _language("he", "Hebrew", "hebrew"),
)}

# py3langid labels that name a variety of a language above.
_LANGID_ALIASES = {"wuu": "zh", "yue": "zh"}
UNDETERMINED = "und"


@lru_cache(maxsize=65536)
def script_of(char: str) -> str | None:
    """The script of one letter, or None for anything that is not a letter."""
    if not char.isalpha():
        return None
    if "\uac00" <= char <= "\ud7a3":
        return "hangul"
    first = unicodedata.name(char, "unknown").split(" ", 1)[0].lower()
    return {"cjk": "han", "hangul": "hangul-jamo"}.get(first, first)


def letter_scripts(text: str) -> list[str]:
    """The script of every letter of ``text`` (NFKC-normalised), in order."""
    return [script for script in map(script_of, unicodedata.normalize("NFKC", text)) if script]


def target_ratio(text: str, language: Language) -> float | None:
    """Letters of the language's scripts over all letters (for Korean: Hangul syllables over
    letters); None when ``text`` has no letters."""
    scripts = letter_scripts(text)
    if not scripts:
        return None
    return sum(script in language.scripts for script in scripts) / len(scripts)


def _family(script: str) -> str:
    return script.split("-", 1)[0]


def script_switches(text: str) -> int:
    """How often the script changes from one letter to the next (non-letters are neutral)."""
    families = [_family(script) for script in letter_scripts(text)]
    return sum(a != b for a, b in zip(families, families[1:]))


def detect_language(text: str) -> tuple[str, float]:
    """The language of ``text`` and a confidence in [0, 1].

    Script first: the script most letters are written in decides when a single language in
    ``LANGUAGES`` uses it (Hangul -> ``ko``; the confidence is that script's share of the
    letters). Where several do (Latin, Han, Cyrillic, Arabic) py3langid decides among the
    languages written in a script the text uses (so "정답은 Jai Ho!입니다" can still be
    Korean). A text without letters is ``und``.
    """
    scripts = Counter(_family(script) for script in letter_scripts(text))
    if not scripts:
        return UNDETERMINED, 0.0
    dominant, count = max(scripts.items(), key=lambda item: (item[1], item[0]))
    owners = [language.code for language in LANGUAGES.values()
              if dominant in {_family(script) for script in language.scripts}]
    if len(owners) == 1:
        return owners[0], count / sum(scripts.values())
    return _identify(text, set(scripts))


def _identify(text: str, scripts: set[str]) -> tuple[str, float]:
    """py3langid's most probable language among those written in one of ``scripts``
    (languages missing from ``LANGUAGES`` are assumed to be)."""
    for label, probability in _identifier().rank(text):
        code = _LANGID_ALIASES.get(label, label)
        known = LANGUAGES.get(code)
        if known is None or scripts & {_family(script) for script in known.scripts}:
            return code, float(probability)
    return UNDETERMINED, 0.0


@lru_cache(maxsize=1)
def _identifier():
    """py3langid's model with normalised probabilities (loaded once, ~1.5 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
