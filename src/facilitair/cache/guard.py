"""Precision guard of the semantic cache.

A cosine similarity says two task texts are *about* the same thing; it does not say they have the
same answer. "Build a REST API with JWT authentication in FastAPI" and "... in Flask", "... for
Python 3.11" and "... 3.12", "add a column" and "remove a column" all embed within a few points
of each other. The guard compares the two texts word by word and refuses a match when they differ
in something that changes the answer:

- ``number`` / ``version`` / ``date``: the numbers (with their units), versions or calendar words
  differ ("10 users" vs "10,000 users", "Python 3.11" vs "3.12", "in March" vs "in June");
- ``negation``: one text is negated and the other is not ("with" vs "without", "can" vs "can't",
  "safe" vs "unsafe", "water" vs "stop watering");
- ``antonym``: opposite or mutually exclusive words ("enable"/"disable", "upload"/"download",
  "ascending"/"descending", "iOS"/"Android", "seconds"/"minutes");
- ``entity``: a named thing (capitalised or technical name, word with digits, known technology,
  snake_case identifier, path or route) is not on both sides ("PostgreSQL" vs "MySQL", "React"
  vs "Vue", "to_roman" vs "from_roman"); what a technology implies may be added ("S3" is on
  AWS, "FastAPI" is Python);
- ``order``: the same things on both sides, swapped around a directional word ("from MySQL to
  PostgreSQL" vs "from PostgreSQL to MySQL", "JSON to YAML" vs "YAML to JSON");
- ``scope``: a qualifier (who, where, which platform or variant: "admin", "mobile", "recursive",
  "extended"...) on one side only;
- ``substitution``: a content word on one side is not matched on the other (not a synonym, a
  typo, another form or a generic frame word) while the two texts line up - their whole wording
  or their content words alone - well enough to be the same request with one slot changed
  ("integration tests" vs "unit tests", "cancel my flight booking" vs "cancel a hotel booking",
  "a REST API for books" vs "... with rate limiting"), or exactly one such word on each side
  however the rest is phrased ("count the orders" vs "sum the order amounts").

Paraphrases are let through: case, punctuation, contractions, filler, greetings and politeness
("hey, quick question: ..."), the request's frame ("write a function that" = "a function
that"), typos (rapidfuzz's edit distance 1, 2 for long words, never between two real words),
Porter2 stems (Snowball) and British/American spelling, compounds ("group by" = "groupby"),
abbreviations by their shape (numeronyms, initialisms, clipped or consonant spellings such as
"num" and "txt"), synonyms, question frames ("how much" = "price"), number words, units and
notations ("fifteen" = 15, "two weeks" = "14 days", "2am" = "02:00", "O(1)" = "constant"),
clause reordering, and free rewordings that share few words (those are left to the cosine
threshold and to the specific rules above).

Everything is plain text processing: deterministic, no model call, about a millisecond per new
pair and a fraction of that once each text's features are cached. Word lists live in
``lexicon.toml`` beside this module: general English and software vocabulary, not benchmark
items.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import importlib.util
import json
import re
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import snowballstemmer
from rapidfuzz.distance import OSA

__all__ = ["RECOMMENDED_THRESHOLD", "Guard", "Lexicon", "Refusal"]

# Default cosine threshold for the matcher (cosine >= T and Guard.check() is None), chosen with
# bench/guard_tuning.py (all-MiniLM-L6-v2): on the coding tuning half, served should-hits fall
# as T rises while traps served stay flat from 0.70 to 0.80; on the fow-cache pairs below ~0.70
# the number of *different* questions that pass (cross-item distractors, the wrong hits of a
# real cache full of entries) climbs steeply. So the knee of both curves plus a small margin.
RECOMMENDED_THRESHOLD = 0.72

# The order in which rules are tried; the first that refuses is reported.
RULES = (
    "number",
    "version",
    "date",
    "negation",
    "antonym",
    "entity",
    "order",
    "scope",
    "substitution",
)


@dataclass(frozen=True)
class Refusal:
    rule: str  # one of RULES
    detail: str  # human explanation, e.g. "numbers differ: {'2'} vs {'3'}"

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


# --------------------------------------------------------------------------------------------
# Stemming and typo distance: Snowball's English (Porter2) stemmer and rapidfuzz's
# optimal-string-alignment distance, after one spelling rule of our own (British -> American).

_ENGLISH = snowballstemmer.stemmer("english")
_ISE = re.compile(r"^(\w{4,})is(e|ed|es|ing|ation|ations|er|ers)$")
_YSE = re.compile(r"^(\w{3,})ys(e|ed|es|ing)$")
_OUR = re.compile(r"^(\w{3,})our(s|ed|ing)?$")
_TRE = re.compile(r"^(\w{3,})tre(s|d)?$")
_OGUE = re.compile(r"^(\w{4,})ogue(s)?$")


def american(word: str) -> str:
    """One spelling for both sides of the Atlantic: -ise/-yse -> -ize/-yze, -our -> -or,
    -tre -> -ter, -ogue -> -og ("initialise", "colour", "centre", "catalogue")."""
    word = _ISE.sub(r"\1iz\2", word)
    word = _YSE.sub(r"\1yz\2", word)
    word = _OUR.sub(r"\1or\2", word)
    word = _TRE.sub(r"\1ter\2", word)
    return _OGUE.sub(r"\1og\2", word)


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Porter2 stem of a word ("authentication" and "authenticate" -> "authent"), or the
    word itself when it is short or not alphabetic ("s3", "c++", "k8s")."""
    w = word.lower()
    if len(w) <= 3 or not w.isalpha():
        return w
    return str(_ENGLISH.stemWord(american(w)))


@functools.lru_cache(maxsize=65536)
def roots(stemmed: str) -> tuple[str, ...]:
    """The stem, and the stems of the words it derives from where Porter2 leaves them apart:
    Latin -ssion/-sion nouns ("submission" -> "submit", "decision" -> "decid"), -ation nouns
    ("quotation" -> "quot", "formation" -> "form") and superlatives ("fastest" -> "fast")."""
    if stemmed.endswith("miss") and len(stemmed) > 6:
        return (stemmed, stemmed[:-2] + "t")
    if stemmed.endswith("is") and len(stemmed) > 5 and stemmed[-3] in "cv":
        return (stemmed, stemmed[:-1] + "d")
    if stemmed.endswith(("at", "est")) and len(stemmed) >= 6:
        return (stemmed, stemmed.removesuffix("at").removesuffix("est"))
    return (stemmed,)


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal-string-alignment distance (a transposition costs 1), cut off above ``limit``."""
    return int(OSA.distance(a, b, score_cutoff=limit))


# --------------------------------------------------------------------------------------------
# Lexicon


def _known_words_from_tokenizer() -> frozenset[str]:
    """Whole words of the embedding model's vocabulary (BERT uncased, ~22k words), used to tell
    a typo ("recieve") from a different real word ("mild" vs "wild"). Empty if not installed."""
    from facilitair.cache.embeddings import shipped_tokenizer

    path = shipped_tokenizer()
    if path is None:
        return frozenset()
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset()
    return frozenset(w for w in vocab if w.isalpha() and len(w) > 2)


def _stems(words: Iterable[str]) -> frozenset[str]:
    return frozenset(stem(w) for w in words)


@dataclass(frozen=True, eq=False)
class Lexicon:
    """The word lists the guard works from (see lexicon.toml). All sets hold stems."""

    negators: frozenset[str]
    polarity: frozenset[str]
    negative_prefixes: tuple[str, ...]
    phrases: Mapping[tuple[str, ...], tuple[str, ...]]
    aliases: Mapping[str, str]
    tech: frozenset[str]
    ambiguous_tech: frozenset[str]
    stopwords: frozenset[str]
    fillers: frozenset[str]
    light: frozenset[str]
    synonyms: Mapping[str, frozenset[int]]
    antonyms: Mapping[str, frozenset[str]]
    exclusive: Mapping[str, frozenset[int]]
    scope: frozenset[str]
    dates: frozenset[str]
    soft_dates: frozenset[str]
    month_abbreviations: Mapping[str, str]
    number_words: Mapping[str, float]
    multipliers: Mapping[str, float]
    ordinals: Mapping[str, float]
    units: Mapping[str, str]
    unit_scales: Mapping[str, tuple[str, float]]
    directional: frozenset[str]
    source_words: frozenset[str]
    complexity: Mapping[str, str]
    implies: Mapping[str, str]
    greetings: frozenset[str]
    frame_similarity: float
    content_similarity: float
    known_words: frozenset[str]

    @classmethod
    def from_toml(cls, text: str, known_words: frozenset[str] = frozenset()) -> Lexicon:
        data: dict[str, Any] = tomllib.loads(text)

        def words(section: str, key: str = "words") -> list[str]:
            return [str(w).lower() for w in data.get(section, {}).get(key, [])]

        phrases: dict[tuple[str, ...], tuple[str, ...]] = {}
        for source, target in data.get("phrases", {}).items():
            key = tuple(stem(w) for w in _split_phrase(source))
            phrases[key] = tuple(str(target).lower().split())

        synonyms: dict[str, set[int]] = {}
        for gid, group in enumerate(data.get("synonyms", {}).get("groups", [])):
            for word in group:
                synonyms.setdefault(stem(str(word)), set()).add(gid)

        antonyms: dict[str, set[str]] = {}
        for pair in data.get("antonyms", {}).get("pairs", []):
            first, second = stem(str(pair[0])), stem(str(pair[1]))
            antonyms.setdefault(first, set()).add(second)
            antonyms.setdefault(second, set()).add(first)
        for left, right in data.get("antonyms", {}).get("opposed", []):
            for first_word in left:
                for second_word in right:
                    first, second = stem(str(first_word)), stem(str(second_word))
                    antonyms.setdefault(first, set()).add(second)
                    antonyms.setdefault(second, set()).add(first)
        exclusive: dict[str, set[int]] = {}
        for gid, group in enumerate(data.get("antonyms", {}).get("exclusive", [])):
            for word in group:
                exclusive.setdefault(stem(str(word)), set()).add(gid)

        numbers = data.get("numbers", {})
        rules = data.get("rules", {})
        return cls(
            negators=_stems(words("negation", "negators")),
            polarity=_stems(words("negation", "polarity")),
            negative_prefixes=tuple(words("negation", "prefixes")),
            phrases=phrases,
            aliases={str(k).lower(): str(v).lower() for k, v in data.get("aliases", {}).items()},
            tech=frozenset(words("tech", "names")),
            ambiguous_tech=frozenset(words("tech", "ambiguous")),
            stopwords=_stems(words("stopwords")) | frozenset(words("stopwords")),
            fillers=_stems(words("fillers")) | frozenset(words("fillers")),
            light=_stems(words("light")) | frozenset(words("light")),
            synonyms={k: frozenset(v) for k, v in synonyms.items()},
            antonyms={k: frozenset(v) for k, v in antonyms.items()},
            exclusive={k: frozenset(v) for k, v in exclusive.items()},
            scope=frozenset(
                form
                for word in words("scope")
                for form in (word, word + "s", word + "es", word + "ly")
            ),
            dates=_stems(words("dates")),
            soft_dates=_stems(words("dates", "soft")),
            month_abbreviations={
                str(k): str(v)
                for k, v in data.get("dates", {}).get("month_abbreviations", {}).items()
            },
            number_words={str(k): float(v) for k, v in numbers.get("words", {}).items()},
            multipliers={str(k): float(v) for k, v in numbers.get("multipliers", {}).items()},
            ordinals={str(k): float(v) for k, v in numbers.get("ordinals", {}).items()},
            units={str(k): str(v) for k, v in numbers.get("units", {}).items()},
            unit_scales={
                str(unit): (str(dimension), float(factor))
                for dimension, table in numbers.get("scales", {}).items()
                for unit, factor in table.items()
            },
            directional=frozenset(words("order", "directional")),
            complexity={
                _complexity_key(str(k)): str(v)
                for k, v in data.get("notation", {}).get("complexity", {}).items()
            },
            implies={str(k): str(v) for k, v in data.get("tech", {}).get("implies", {}).items()},
            source_words=frozenset(words("order", "sources")),
            greetings=frozenset(words("fillers", "greetings")),
            frame_similarity=float(rules.get("frame_similarity", 0.6)),
            content_similarity=float(rules.get("content_similarity", 0.5)),
            known_words=known_words,
        )

    @classmethod
    def default(cls) -> Lexicon:
        return _default_lexicon()

    @functools.cached_property
    def _group_members(self) -> dict[int, frozenset[str]]:
        members: dict[int, set[str]] = {}
        for word, groups in self.synonyms.items():
            for gid in groups:
                members.setdefault(gid, set()).add(word)
        return {gid: frozenset(words) for gid, words in members.items()}

    def _with_synonyms(self, word: str) -> frozenset[str]:
        out = {word}
        for gid in self.synonyms.get(word, ()):
            out |= self._group_members[gid]
        return frozenset(out)

    def opposites(self, word: str) -> frozenset[str]:
        """Stems opposite to ``word``: its antonyms and those of its synonyms ("freezing" ~
        "cold" <-> "hot"), never one of its own synonyms. The opposites' own synonyms are not
        added: two hops through synonym groups made opposites of unrelated words ("get" ~
        "receive" <-> "send" ~ "submit")."""
        cached = self._opposites_cache.get(word)
        if cached is None:
            own = self._with_synonyms(word)
            out: set[str] = set()
            for variant in own:
                out |= self.antonyms.get(variant, frozenset())
            cached = frozenset(out - own)
            self._opposites_cache[word] = cached
        return cached

    @functools.cached_property
    def _opposites_cache(self) -> dict[str, frozenset[str]]:
        return {}

    @functools.cached_property
    def phrases_single(self) -> frozenset[str]:
        return frozenset(key[0] for key in self.phrases if len(key) == 1)

    @functools.cached_property
    def phrase_words(self) -> frozenset[str]:
        """The words phrases are rewritten to ("late_fee", "spring_boot")."""
        return frozenset(word for target in self.phrases.values() for word in target)

    @functools.cached_property
    def max_phrase_len(self) -> int:
        return max((len(key) for key in self.phrases), default=1)


@functools.lru_cache(maxsize=1)
def _default_lexicon() -> Lexicon:
    text = importlib.resources.files(__package__).joinpath("lexicon.toml").read_text("utf-8")
    return Lexicon.from_toml(text, known_words=_known_words_from_tokenizer())


def _split_phrase(text: str) -> list[str]:
    return [p for p in re.split(r"[\s]+", text.lower().strip()) if p]


# --------------------------------------------------------------------------------------------
# Tokens and per-text features


@dataclass(frozen=True, slots=True)
class _Tok:
    low: str  # lower-case form (after contractions, phrases, aliases)
    stem: str
    pos: int
    kind: str  # "word" | "number"
    cap: bool = False  # written like a name (capitalised mid-sentence, ALL CAPS, iPhone, S3...)
    value: str = ""  # numbers: canonical value ("10000", "3.11", "9:15")
    unit: str = ""  # numbers: canonical unit that follows ("gb", "pm", "%", "pound")
    version: bool = False  # numbers: a version ("Python 3.11", "v2")
    weak: bool = False  # numbers: may be dropped ("one", "first")


@dataclass(frozen=True, slots=True)
class _Features:
    text: str
    tokens: tuple[_Tok, ...]
    keys: frozenset[str]  # every match key of every token
    token_keys: tuple[frozenset[str], ...]  # per token
    numbers: tuple[_Tok, ...]
    dates: frozenset[str]
    date_surfaces: Mapping[str, str]
    negation_words: tuple[str, ...]
    entities: tuple[int, ...]  # token indexes
    content: tuple[int, ...]  # token indexes of content words (not entities)
    stems: frozenset[str]
    implied: frozenset[str]  # what its technologies imply: "S3" is on AWS, "FastAPI" is Python


_CHUNK = re.compile(
    r"(?:(?<=\s)|^)\.(?=[A-Za-z])[A-Za-z0-9]+"  # .docx, .NET
    r"|[A-Za-z0-9£$€]+(?:[.,:'’+#_-]+[A-Za-z0-9]+)*[+#]*'?"  # words, numbers, node.js, c++
    r"|[%]"
    r"|[.?!;:,]"
)
# A path or route ("/api/checkout", "./archive", "~/.ssh/config") names one thing; it becomes a
# single snake_case token, so another path is another entity ("prev/next" stays two words).
_PATH = re.compile(r"(?<![\w/.~])(?:\.{1,2}/|~/|/)[\w.{}:*-]*(?:/[\w.{}:*-]+)*/?")


_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s`'\"<>]+[^\s`'\"<>.,;:!?)]")


def _token_for(kind: str, text: str) -> str:
    """ "/api/checkout" -> " path_api_checkout ": one snake_case token, a name."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", text) if p]
    return f" {kind}_" + "_".join(parts).lower() + " " if parts else text


_ACRONYM_PLURAL = re.compile(r"^[A-Z]{2,}s$")
_COMPARISON = re.compile(r"(?<=\s)(>=|<=|>|<)(?=\s*\d)")  # "> 100MB", "<= 5"
_COMPARISONS = {">": "over", "<": "under", ">=": "minimum", "<=": "maximum"}
_BIG_O = re.compile(r"\b[Oo]\(([^()]{1,16})\)")
_NUMERIC = re.compile(r"^\d+(?:\.\d+)*$")
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})([ap]m)?$")
_NUM_SUFFIX = re.compile(r"^(\d+(?:\.\d+)?)([a-z%]+)$")
_VERSION_WORD = re.compile(r"^v(\d+(?:\.\d+)*)$")
_CONTRACTION_NOT = {"ca": "can", "wo": "will", "sha": "shall", "ai": "be"}
_CURRENCY = {"£": "pound", "$": "dollar", "€": "euro"}
_DETERMINERS = frozenset(
    {"a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that"}
    | {"these", "those", "some", "any", "each", "every", "all", "both"}
)
_POSSESSIVES = frozenset({"the", "my", "your", "our", "their", "its", "his", "her"})
_AMBIGUOUS_DATES = frozenset({"may", "march", "sun", "sat", "wed", "mar", "jan", "dec", "sep"})
_VERSION_CUES = frozenset({"version", "v", "release", "ver", "python", "java", "node", "nodejs"})


def _complexity_key(inner: str) -> str:
    return re.sub(r"\s+", " ", inner.lower().replace("**", "^").replace("²", "^2")).strip()


def _clock(value: str, unit: str) -> tuple[str, str]:
    """One spelling of a time of day: "2am", "2:00 am" and "02:00" are "2:00"; "3pm" is
    "15:00". Other numbers pass unchanged."""
    time = _TIME.match(value)
    if unit in ("am", "pm") and (time or value.isdigit()):
        hour, minute = (int(time.group(1)), time.group(2)) if time else (int(value), "00")
        if 1 <= hour <= 12:
            return f"{hour % 12 + (12 if unit == 'pm' else 0)}:{minute}", ""
    if time and not time.group(3):
        return f"{int(time.group(1))}:{time.group(2)}", unit
    return value, unit


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class _Tokenizer:
    def __init__(self, lexicon: Lexicon) -> None:
        self.lx = lexicon

    # raw chunks -> (surface, lower, sentence_initial) ------------------------------------
    def _raw(self, text: str) -> list[tuple[str, str, bool]]:
        text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'")
        text = _BIG_O.sub(self._complexity, text)
        text = _COMPARISON.sub(lambda m: _COMPARISONS[m.group(1)], text)
        text = _URL.sub(lambda m: _token_for("url", m.group(0)), text)
        text = _PATH.sub(lambda m: _token_for("path", m.group(0)), text)
        text = text.replace("/", " / ")
        out: list[tuple[str, str, bool]] = []
        initial = True
        chunks = [m.group(0) for m in _CHUNK.finditer(text)]
        # a leading greeting ("Morning!", "Hi team,", "Good evening -") is not part of the request
        for n in (3, 2, 1):
            head = [c.lower() for c in chunks[:n]]
            if (
                len(chunks) > n
                and chunks[n] in ".?!;:,"
                and all(w in self.lx.greetings or w in self.lx.fillers for w in head)
            ):
                chunks = chunks[n + 1 :]
                break
        for chunk in chunks:
            if chunk in ".?!;:":
                initial = True
                continue
            if chunk == ",":
                continue
            chunk = chunk.rstrip("'").strip("-_")
            if _ACRONYM_PLURAL.match(chunk):  # "IPs", "APIs", "URLs"
                chunk = chunk[:-1]
            if not chunk:
                continue
            for piece in self._expand(chunk):
                out.append((piece, piece.lower(), initial))
                initial = False
        return out

    def _complexity(self, match: re.Match[str]) -> str:
        """ "O(1)" -> "constant", "O(n log n)" -> "linearithmic": the name a rewording uses."""
        name = self.lx.complexity.get(_complexity_key(match.group(1)))
        return f" {name} " if name else match.group(0)

    def _expand(self, chunk: str) -> list[str]:
        """Contractions, currency, hyphens, number+unit splits. Surface case is kept."""
        low = chunk.lower()
        if low.endswith("n't"):
            base = low[:-3]
            return [_CONTRACTION_NOT.get(base, chunk[:-3]), "not"] if base else ["not"]
        if low == "cannot":
            return ["can", "not"]
        for suffix in ("'s", "'re", "'ve", "'ll", "'d", "'m"):
            if low.endswith(suffix) and len(low) > len(suffix):
                chunk = chunk[: -len(suffix)]
                low = chunk.lower()
                break
        if stem(low) in self.lx.phrases_single:
            return [low]
        if chunk[0] in _CURRENCY:
            rest = chunk[1:].strip()
            return [*self._expand(rest), _CURRENCY[chunk[0]]] if rest else []
        if _THOUSANDS.match(low):
            return [low.replace(",", "")]
        if "," in chunk:
            return [p for part in chunk.split(",") if part for p in self._expand(part)]
        if "-" in chunk or ("_" in chunk and not chunk.replace("_", "").isalpha()):
            parts = [p for p in re.split(r"[-]+", chunk) if p]
            if len(parts) > 1:
                return [p for part in parts for p in self._expand(part)]
        m = _NUM_SUFFIX.match(low)
        if m:
            number, suffix = m.groups()
            if suffix in ("st", "nd", "rd", "th"):
                return [number]
            if suffix in ("k", "m", "bn"):
                return [_fmt(float(number) * self.lx.multipliers.get(suffix, 1.0))]
            if suffix in self.lx.units or suffix == "%":
                return [number, suffix]
        return [chunk]

    # tokens ---------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[_Tok]:
        raw = self._raw(text)
        lows = [low for _, low, _ in raw]
        stems = [stem(low) for low in lows]
        surfaces = [s for s, _, _ in raw]
        initials = [i for _, _, i in raw]
        # multi-word phrases, longest first
        merged: list[tuple[str, str, bool]] = []
        i = 0
        max_len = self.lx.max_phrase_len
        while i < len(lows):
            for n in range(min(max_len, len(lows) - i), 0, -1):
                target = self.lx.phrases.get(tuple(stems[i : i + n]))
                if target is not None:
                    cap = any(
                        self._looks_named(surfaces[k], initials[k])
                        and lows[k] not in self.lx.stopwords
                        for k in range(i, i + n)
                    )
                    for word in target:
                        merged.append((word if not cap else word.upper(), word, initials[i]))
                    i += n
                    break
            else:
                merged.append((surfaces[i], lows[i], initials[i]))
                i += 1
        tokens: list[_Tok] = []
        k = 0
        while k < len(merged):
            surface, low, initial = merged[k]
            low = self.lx.aliases.get(low, low)
            if low.startswith(".") and low[1:].isalpha():
                low = self.lx.aliases.get(low[1:], low[1:])
            consumed, number = self._number(merged, k)
            if number is not None:
                value, weak = number
                unit = ""
                nxt = k + consumed
                if nxt < len(merged) and merged[nxt][1] in self.lx.units:
                    unit = self.lx.units[merged[nxt][1]]
                if unit:
                    weak = False  # "five minutes" is as explicit as "5 minutes"
                value, unit = _clock(value, unit)
                previous = tokens[-1] if tokens else None
                version = bool(
                    previous is not None
                    and previous.kind == "word"
                    and (previous.low in _VERSION_CUES or previous.low in self.lx.tech)
                    and (previous.low in _VERSION_CUES or "." in value or previous.cap)
                )
                tokens.append(
                    _Tok(
                        low=value,
                        stem=value,
                        pos=len(tokens),
                        kind="number",
                        value=value,
                        unit=unit,
                        version=version or (previous is not None and previous.low == "v"),
                        weak=weak,
                    )
                )
                if unit and nxt < len(merged) and merged[nxt][1] in self.lx.units:
                    tokens.append(_Tok(low=unit, stem=unit, pos=len(tokens), kind="unit"))
                    consumed += 1
                k += consumed
                continue
            if (
                low in ("a", "an")
                and k + 1 < len(merged)
                and self.lx.unit_scales.get(self.lx.units.get(merged[k + 1][1], ""))
                and merged[k + 1][1] not in self.lx.ordinals  # "a second property"
            ):  # "an hour", "a minute": one of them
                unit = self.lx.units[merged[k + 1][1]]
                tokens.append(
                    _Tok(low="1", stem="1", pos=len(tokens), kind="number", value="1", unit=unit)
                )
                tokens.append(_Tok(low=unit, stem=unit, pos=len(tokens), kind="unit"))
                k += 2
                continue
            version_word = _VERSION_WORD.match(low)
            if version_word:
                tokens.append(
                    _Tok(
                        low=version_word.group(1),
                        stem=version_word.group(1),
                        pos=len(tokens),
                        kind="number",
                        value=version_word.group(1),
                        version=True,
                    )
                )
                k += 1
                continue
            following = merged[k + 1][1] if k + 1 < len(merged) else ""
            tokens.append(self._word(surface, low, initial, len(tokens), following))
            k += 1
        return tokens

    def _number(
        self, merged: list[tuple[str, str, bool]], k: int
    ) -> tuple[int, tuple[str, bool] | None]:
        """Digits, times, versions or a run of number words starting at ``k``."""
        low = merged[k][1]
        if _NUMERIC.match(low) or _TIME.match(low):
            return 1, (low if ":" in low or low.count(".") > 0 else _fmt(float(low)), False)
        lx = self.lx
        if low in lx.ordinals and not (k > 0 and _NUMERIC.match(merged[k - 1][1])):
            # "the second largest" states a rank; "breadth-first", "largest first" do not
            ranked = k > 0 and merged[k - 1][1] in _POSSESSIVES
            return 1, (_fmt(lx.ordinals[low]), not ranked)
        total = 0.0
        current = 0.0
        consumed = 0
        seen = False
        j = k
        while j < len(merged):
            word = merged[j][1]
            if word in lx.number_words:
                current += lx.number_words[word]
                seen = True
            elif word in lx.multipliers and len(word) > 2 and (seen or consumed == 0):
                current = (current or 1.0) * lx.multipliers[word]
                if lx.multipliers[word] >= 1000:
                    total += current
                    current = 0.0
                seen = True
            elif (
                word == "and"
                and seen
                and j + 1 < len(merged)
                and merged[j + 1][1] in lx.number_words
            ):
                pass
            else:
                break
            consumed += 1
            j += 1
        if not seen:
            return 1, None
        value = total + current
        weak = True  # spelled out: "the two sides" may be dropped, "two dice" vs "three" may not
        return consumed, (_fmt(value), weak)

    def _looks_named(self, surface: str, initial: bool) -> bool:
        if not surface or not surface[0].isalpha():
            return bool(re.search(r"[A-Za-z]", surface) and re.search(r"\d", surface))
        if len(surface) >= 2 and surface.isupper() and surface.isalpha():
            return True
        if any(c.isupper() for c in surface[1:]) and any(c.islower() for c in surface):
            return True  # iPhone, macOS, GitHub
        if re.search(r"\d", surface):
            return True
        return surface[0].isupper() and not initial and surface != "I"

    def _word(self, surface: str, low: str, initial: bool, pos: int, following: str) -> _Tok:
        cap = self._is_name(surface, low, initial, following)
        return _Tok(low=low, stem=stem(low), pos=pos, kind="word", cap=cap)

    def _is_name(self, surface: str, low: str, initial: bool, following: str) -> bool:
        """A named thing: a known technology, a word written like a name (not a common noun
        in capitals such as "PC"), or a dotted/symbolic name ("node.js", "c++")."""
        lx = self.lx
        if low in lx.stopwords or low in lx.fillers:
            return False
        ambiguous = low in lx.ambiguous_tech or surface.lower() in lx.ambiguous_tech
        if ambiguous and initial and following in lx.stopwords:
            return False  # a verb opening the sentence: "Go through the toolbar", "Express it"
        if low in lx.tech and (not ambiguous or self._looks_named(surface, False)):
            return True
        if (
            self._looks_named(surface, initial)
            and low not in lx.light
            and not (surface.isupper() and low in lx.synonyms)
        ):
            return True
        # a dotted, symbolic or snake_case name: "node.js", "c++", "to_roman"
        symbolic = any(c in low for c in ".+#_") and low not in lx.phrase_words
        return symbolic and re.search(r"[a-z]", low) is not None


def _with_compounds(
    tokens: tuple[_Tok, ...], keys: list[frozenset[str]]
) -> tuple[frozenset[str], ...]:
    """Two neighbouring words also match the one word they make: "group by" = "groupby",
    "file names" = "filenames", "in-order" = "inorder", "West Europe" = "westeurope". Each word
    already has the key "j:" + its stem; each of a pair gets "j:" + the stem of the pair."""
    out = list(keys)
    for i in range(len(tokens) - 1):
        first, second = tokens[i], tokens[i + 1]
        if first.kind == second.kind == "word" and (first.low + second.low).isalpha():
            joined = "j:" + stem(first.low + second.low)
            out[i] = out[i] | {joined}
            out[i + 1] = out[i + 1] | {joined}
    return tuple(out)


def _keys(tok: _Tok, lx: Lexicon) -> frozenset[str]:
    if tok.kind == "number":
        return frozenset({"#" + tok.value})
    keys = {tok.low, tok.stem, "j:" + tok.stem}
    name, dot, extension = tok.low.rpartition(".")
    if dot and name and extension.isalpha():  # "report.xlsx" is an Excel file
        extension = lx.aliases.get(extension, extension)
        if extension in lx.tech:
            keys.add(extension)
    tok_roots = roots(tok.stem)
    for root in tok_roots:
        keys.add("r:" + root)
    for word in (tok.low, *tok_roots):
        for gid in lx.synonyms.get(word, ()):
            keys.add(f"s:{gid}")
    return frozenset(keys)


# --------------------------------------------------------------------------------------------
# The guard


class Guard:
    """Refuses a semantic-cache match when the cached text and the query differ in something
    that changes the answer. ``check`` returns None when they may share an answer."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon or Lexicon.default()
        self._tokenizer = _Tokenizer(self.lexicon)
        self._features = functools.lru_cache(maxsize=8192)(self._compute)
        self._spelled_out = functools.lru_cache(maxsize=8192)(self._compute_spelled_out)

    # public -----------------------------------------------------------------------------
    def check(self, cached: str, query: str) -> Refusal | None:
        a = self._features(cached)
        b = self._features(query)
        for rule in (
            self._numbers,
            self._dates,
            self._negation,
            self._antonyms,
            self._entities,
            self._order,
            self._content,
        ):
            refusal = rule(a, b)
            if refusal is not None:
                return refusal
        return None

    def features(self, text: str) -> _Features:
        return self._features(text)

    # features ---------------------------------------------------------------------------
    def _compute(self, text: str) -> _Features:
        lx = self.lexicon
        tokens = tuple(self._tokenizer.tokenize(text))
        token_keys = _with_compounds(tokens, [_keys(t, lx) for t in tokens])
        keys = frozenset().union(*token_keys) if token_keys else frozenset()
        numbers = tuple(t for t in tokens if t.kind == "number")
        date_surfaces = {
            lx.month_abbreviations.get(t.low, t.stem): t.low
            for t in tokens
            if t.kind == "word"
            and (t.stem in lx.dates or t.low in lx.dates)
            and (t.low not in _AMBIGUOUS_DATES or t.cap)
        }
        dates = frozenset(date_surfaces)
        negation_words = tuple(
            t.low
            for t in tokens
            if t.kind == "word"
            and (t.stem in lx.negators or t.stem in lx.polarity or t.low in lx.negators)
        )
        entities: list[int] = []
        content: list[int] = []
        for i, t in enumerate(tokens):
            if t.kind != "word":
                continue
            if t.cap:
                entities.append(i)
            elif not (
                t.low in lx.stopwords
                or t.stem in lx.stopwords
                or t.low in lx.fillers
                or t.stem in lx.fillers
                or t.low in lx.light
                or t.stem in lx.light
                or t.stem in lx.negators
                or t.stem in lx.polarity
                or t.stem in lx.dates
                or t.low in lx.units.values()
                or len(t.low) < 2
            ):
                content.append(i)
        return _Features(
            text=text,
            tokens=tokens,
            keys=keys,
            token_keys=token_keys,
            numbers=numbers,
            dates=dates,
            date_surfaces=date_surfaces,
            negation_words=negation_words,
            entities=tuple(entities),
            content=tuple(content),
            stems=frozenset(t.stem for t in tokens if t.kind == "word"),
            implied=frozenset(lx.implies[t.low] for t in tokens if t.low in lx.implies),
        )

    # helpers ----------------------------------------------------------------------------
    def _typo(self, word: str, other: _Features) -> bool:
        """``word`` is a misspelling of some word of ``other`` (or the other way round)."""
        if len(word) < 4 or not word.isalpha():
            return False  # too short to tell a typo from another word
        known = self.lexicon.known_words
        for t in other.tokens:
            candidate = t.low
            if t.kind != "word" or len(candidate) < 3 or candidate[0] != word[0]:
                continue
            if abs(len(candidate) - len(word)) > 2:
                continue
            shortest = min(len(candidate), len(word))
            limit = 2 if shortest >= 8 else 1
            if edit_distance(word, candidate, limit) <= limit:
                if known and word in known and candidate in known:
                    continue  # two real words ("mild"/"wild"), not a typo
                if word in self.lexicon.tech and candidate in self.lexicon.tech:
                    continue  # two technologies ("httpx"/"https"), not a typo
                return True
        return False

    def _matched(self, index: int, mine: _Features, other: _Features) -> bool:
        if mine.token_keys[index] & other.keys or mine.tokens[index].low in other.implied:
            return True
        if index in self._spelled_out(mine.text, other.text):
            return True
        return self._typo(mine.tokens[index].low, other) or self._shortened(
            mine.tokens[index], other
        )

    def _shortened(self, tok: _Tok, other: _Features) -> bool:
        """One of the two is a clipped or consonant spelling of the other ("num" = "number",
        "txt" = "text", "impl" = "implement", "subdirs" = "subdirectories"): same first letter,
        the short one's letters in order inside the long one, and the short one not a word."""
        known = self.lexicon.known_words
        if tok.kind != "word" or not tok.low.isalpha():
            return False
        for candidate in other.tokens:
            if candidate.kind != "word" or not candidate.low.isalpha():
                continue
            short, long = sorted((tok.low, candidate.low), key=len)
            short = short.removesuffix("s") if len(short) > 3 else short
            if (
                3 <= len(short) <= 7
                and len(long) >= len(short) + 2
                and short[0] == long[0]
                and short not in known
                and _subsequence(short, long)
            ):
                return True
        return False

    def _compute_spelled_out(self, mine_text: str, other_text: str) -> frozenset[int]:
        """Token indexes of `mine` that are an abbreviation spelled out in `other`, or part of
        the spelling-out of one of `other`'s abbreviations: numeronyms ("k8s" = "kubernetes",
        "a11y" = "accessibility") and initialisms ("DFS" = "depth-first search", "IAM" =
        "Identity and Access Management", "AZs" = "availability zones"). A rule on the shape of
        words, not a list of them."""
        mine, other = self._features(mine_text), self._features(other_text)
        mine_short = {i for i, _ in _abbreviation_runs(mine, other, self.lexicon)}
        mine_long = {i for _, run in _abbreviation_runs(other, mine, self.lexicon) for i in run}
        return frozenset(mine_short | mine_long)

    # rules ------------------------------------------------------------------------------
    def _numbers(self, a: _Features, b: _Features) -> Refusal | None:
        # a number that changed ("3 retries" vs "5"), or an explicit one on one side only ("in
        # 15 minutes" vs "later"); a spelled-out count on one side only ("sort the two halves")
        # restates rather than specifies. Compared as written, then in base units.
        raw_a = [(t.value, t.weak) for t in a.numbers]
        raw_b = [(t.value, t.weak) for t in b.numbers]
        if _numbers_differ(raw_a, raw_b) and _numbers_differ(
            self._in_base_units(a), self._in_base_units(b)
        ):
            only_a, only_b = _one_sided(raw_a, raw_b)
            versions = {t.value for t in a.numbers + b.numbers if t.version}
            rule = "version" if versions & (set(only_a) | set(only_b)) else "number"
            return Refusal(
                rule,
                f"{'versions' if rule == 'version' else 'numbers'} differ: "
                f"{_show(only_a)} vs {_show(only_b)}",
            )
        units_a = {t.value: t.unit for t in a.numbers if t.unit}
        for t in b.numbers:
            unit_a = units_a.get(t.value)
            if t.unit and unit_a and unit_a != t.unit:
                return Refusal("number", f"units differ: {t.value} {unit_a} vs {t.value} {t.unit}")
        return None

    def _in_base_units(self, mine: _Features) -> list[tuple[str, bool]]:
        """Quantities converted to one unit per dimension ("two weeks" = "14 days")."""
        out: list[tuple[str, bool]] = []
        for t in mine.numbers:
            scale = self.lexicon.unit_scales.get(t.unit)
            if scale is None or ":" in t.value or t.value.count(".") > 1:
                out.append((t.value + t.unit, t.weak))
            else:
                out.append((f"{float(t.value) * scale[1]:.6g}{scale[0]}", t.weak))
        return out

    def _dates(self, a: _Features, b: _Features) -> Refusal | None:
        soft = self.lexicon.soft_dates
        only_a = {
            d for d in a.dates - b.dates if d not in soft and not self._typo(a.date_surfaces[d], b)
        }
        only_b = {
            d for d in b.dates - a.dates if d not in soft and not self._typo(b.date_surfaces[d], a)
        }
        if only_a or only_b:
            return Refusal("date", f"dates differ: {_show(only_a)} vs {_show(only_b)}")
        return None

    def _prefix_negations(self, mine: _Features, other: _Features) -> list[str]:
        found: list[str] = []
        for t, keys in zip(mine.tokens, mine.token_keys, strict=True):
            if t.kind != "word" or keys & other.keys:
                continue
            for prefix in self.lexicon.negative_prefixes:
                rest = t.low[len(prefix) :]
                if t.low.startswith(prefix) and len(rest) >= 4:
                    rest_keys = {rest, stem(rest), *("r:" + r for r in roots(stem(rest)))}
                    if rest_keys & other.keys:
                        found.append(t.low)
                        break
        return found

    def _negation(self, a: _Features, b: _Features) -> Refusal | None:
        neg_a = [*a.negation_words, *self._prefix_negations(a, b)]
        neg_b = [*b.negation_words, *self._prefix_negations(b, a)]
        if len(neg_a) % 2 != len(neg_b) % 2:
            return Refusal(
                "negation",
                f"one side is negated: {_show(neg_a) if neg_a else 'none'} vs "
                f"{_show(neg_b) if neg_b else 'none'}",
            )
        return None

    def _antonyms(self, a: _Features, b: _Features) -> Refusal | None:
        lx = self.lexicon
        only_a = a.stems - b.stems
        only_b = b.stems - a.stems
        for word in sorted(only_a):
            opposites = sorted(
                other
                for other in only_b
                if other in lx.opposites(word) or word in lx.opposites(other)
            )
            if opposites:
                return Refusal("antonym", f"opposites: {word!r} vs {opposites[0]!r}")
            groups = lx.exclusive.get(word)
            if not groups:
                continue
            synonyms = lx.synonyms.get(word, frozenset())
            for other in sorted(only_b):
                if (
                    lx.exclusive.get(other, frozenset()) & groups
                    and not lx.synonyms.get(other, frozenset()) & synonyms
                    and roots(other)[-1] != roots(word)[-1]
                ):
                    return Refusal("antonym", f"exclusive alternatives: {word!r} vs {other!r}")
        return None

    def _entities(self, a: _Features, b: _Features) -> Refusal | None:
        missing_a = [a.tokens[i].low for i in a.entities if not self._matched(i, a, b)]
        missing_b = [b.tokens[i].low for i in b.entities if not self._matched(i, b, a)]
        if missing_a or missing_b:
            return Refusal(
                "entity",
                f"named things differ: only in cached {_show(missing_a)}, "
                f"only in query {_show(missing_b)}",
            )
        return None

    def _order(self, a: _Features, b: _Features) -> Refusal | None:
        """The same two things on both sides, on opposite ends of a directional word ("from X
        to Y" vs "from Y to X"), or one thing that is the source on one side ("from X") and the
        target on the other ("to X")."""
        lx = self.lexicon
        sources = lx.source_words
        targets = lx.directional - sources

        def relations(
            f: _Features, other: _Features
        ) -> tuple[set[tuple[str, str]], dict[str, str]]:
            anchors = sorted(i for i in (*f.entities, *f.content) if self._matched(i, f, other))
            names = {i: self._canonical(i, f, other) for i in anchors}
            edges: set[tuple[str, str]] = set()
            roles: dict[str, str] = {}
            anchor_set = set(anchors)

            def run(k: int, step: int) -> list[int]:
                """Anchors in the phrase next to position k ("a Word document" before "to")."""
                found: list[int] = []
                i = k + step
                while 0 <= i < len(f.tokens) and abs(i - k) <= 5:
                    t = f.tokens[i]
                    if t.low in lx.directional:
                        break
                    if i in anchor_set:
                        found.append(i)
                    elif t.low not in _DETERMINERS:
                        break
                    i += step
                return found

            for k, t in enumerate(f.tokens):
                if t.kind != "word" or t.low not in lx.directional:
                    continue
                before = run(k, -1)
                after = run(k, 1)
                if after:
                    roles.setdefault(names[min(after)], "source" if t.low in sources else "target")
                if before and after and t.low in targets:
                    edges.update((names[x], names[y]) for x in before for y in after)
            return edges, roles

        edges_a, roles_a = relations(a, b)
        edges_b, roles_b = relations(b, a)
        for x, y in sorted(edges_a):
            if (y, x) in edges_b and (x, y) not in edges_b:
                return Refusal("order", f"direction reversed: {x} -> {y} vs {y} -> {x}")
        for name, role in sorted(roles_a.items()):
            other = roles_b.get(name)
            if other is not None and other != role:
                return Refusal("order", f"{name!r} is the {role} in cached, the {other} in query")
        return None

    def _canonical(self, index: int, mine: _Features, other: _Features) -> str:
        """A name for token ``index`` that the matching token of ``other`` shares."""
        common = mine.token_keys[index] & other.keys
        tok = mine.tokens[index]
        if tok.stem in common:
            return tok.stem
        if common:
            return min(common)
        return tok.stem

    def _content(self, a: _Features, b: _Features) -> Refusal | None:
        lx = self.lexicon
        unmatched_a = [i for i in a.content if not self._matched(i, a, b)]
        unmatched_b = [i for i in b.content if not self._matched(i, b, a)]
        if not unmatched_a and not unmatched_b:
            return None
        words_a = [a.tokens[i].low for i in unmatched_a]
        words_b = [b.tokens[i].low for i in unmatched_b]
        scoped = [
            f.tokens[i].low
            for f, idx in ((a, unmatched_a), (b, unmatched_b))
            for i in idx
            if f.tokens[i].low in lx.scope
        ]
        if scoped:
            return Refusal(
                "scope",
                f"qualifier on one side only: {_show(scoped)} "
                f"(cached {_show(words_a)}, query {_show(words_b)})",
            )
        if len(unmatched_a) == len(unmatched_b) == 1:
            # exactly one word each that the other lacks, however the rest is phrased: one
            # slot changed ("count the orders" vs "sum the order amounts")
            return Refusal("substitution", f"one word changed: {words_a[0]!r} vs {words_b[0]!r}")
        wording, content = self.alignment(a, b)
        if wording >= lx.frame_similarity or content >= lx.content_similarity:
            return Refusal(
                "substitution",
                f"same request with different words: cached {_show(words_a)}, "
                f"query {_show(words_b)} (wording {wording:.0%}, "
                f"content words {content:.0%} aligned)",
            )
        return None

    def alignment(self, a: _Features, b: _Features) -> tuple[float, float]:
        """How well the two texts line up, as (all words, content words only), each 0..1, with
        matching words (synonyms, typos, other forms) counted as equal. Near 1 for "the same
        sentence with a slot changed"; low for a free rewording that shares few words."""
        lx = self.lexicon
        seq_a: list[str] = []
        seq_b: list[str] = []
        content_a: list[str] = []
        content_b: list[str] = []
        for mine, other, seq, content in ((a, b, seq_a, content_a), (b, a, seq_b, content_b)):
            content_set = set(mine.content) | set(mine.entities)
            for i, t in enumerate(mine.tokens):
                if t.kind == "word" and (t.low in lx.fillers or t.stem in lx.fillers):
                    continue
                if t.kind != "word":
                    name = "#" + t.value if t.kind == "number" else "#" + t.low
                elif self._matched(i, mine, other):
                    name = self._canonical(i, mine, other)
                else:
                    name = "?" + t.stem
                seq.append(name)
                if i in content_set:
                    content.append(name)
        return _ratio(seq_a, seq_b), _ratio(content_a, content_b)


_CAMEL = re.compile(r"[A-Z][a-z]+|[a-z]+")
_NUMERONYM = re.compile(r"^([a-z])(\d{1,2})([a-z])s?$")


def _abbreviation_runs(
    short: _Features, long: _Features, lx: Lexicon
) -> list[tuple[int, list[int]]]:
    """(index of an abbreviation in `short`, indexes of the words of `long` it stands for).
    Initials are read from the raw words of `long` ("depth-first" gives d, f even though the
    tokenizer reads "first" as a number); they map back to the tokens that share a word."""
    index_of: dict[str, int] = {}
    for j, t in enumerate(long.tokens):
        if t.kind == "word":
            for part in (t.low, *re.split(r"[-_]", t.low)):
                index_of.setdefault(part, j)
    words = [
        (index_of.get(whole.lower(), -1), part.lower())
        for whole in re.findall(r"[A-Za-z]+", long.text)
        for part in (_CAMEL.findall(whole) or [whole])
        if part.lower() not in lx.stopwords
    ]
    runs: list[tuple[int, list[int]]] = []
    for i, t in enumerate(short.tokens):
        if t.kind != "word":
            continue
        numeronym = _NUMERONYM.match(t.low)
        if numeronym:
            first, count, last = numeronym.group(1), int(numeronym.group(2)), numeronym.group(3)
            for j, part in words:
                for word in {part, part.removesuffix("s")}:
                    if len(word) == count + 2 and word[0] == first and word[-1] == last:
                        runs.append((i, [j] if j >= 0 else []))
            continue
        if not t.cap or not t.low.isalpha():
            continue
        plural = t.low.removesuffix("s") if len(t.low) > 2 else t.low  # "AZs", "APIs"
        for letters in dict.fromkeys((t.low, plural)):
            run = _initials_run(letters, words) if 2 <= len(letters) <= 6 else None
            if run is not None:
                runs.append((i, run))
                break
    return runs


def _initials_run(letters: str, words: list[tuple[int, str]]) -> list[int] | None:
    for start in range(len(words) - len(letters) + 1):
        window = words[start : start + len(letters)]
        if all(part[0] == letter for (_, part), letter in zip(window, letters, strict=True)):
            return sorted({j for j, _ in window if j >= 0})
    return None


def _subsequence(short: str, long: str) -> bool:
    letters = iter(long)
    return all(letter in letters for letter in short)


def _one_sided(
    a: list[tuple[str, bool]], b: list[tuple[str, bool]]
) -> tuple[Counter[str], Counter[str]]:
    """The values only in `a` and only in `b`, counted (two 5s against one is one 5 more)."""
    values_a, values_b = Counter(v for v, _ in a), Counter(v for v, _ in b)
    return values_a - values_b, values_b - values_a


def _numbers_differ(a: list[tuple[str, bool]], b: list[tuple[str, bool]]) -> bool:
    """(value, spelled out) lists: a value changed, or an explicit one is on one side only."""
    only_a, only_b = _one_sided(a, b)
    explicit = {v for v, weak in a + b if not weak}
    return bool(only_a and only_b) or bool(explicit & (set(only_a) | set(only_b)))


def _ratio(first: list[str], second: list[str]) -> float:
    if not first or not second:
        return 0.0
    return difflib.SequenceMatcher(None, first, second, autojunk=False).ratio()


def _show(items: Iterable[str] | Counter[str]) -> str:
    values = sorted(items.elements()) if isinstance(items, Counter) else sorted(items)
    return "{" + ", ".join(repr(v) for v in values) + "}"
