"""Text of the synthetic world: voice-assistant requests paired with replies, split for training.

- Base sentences use common names and cities and are split train/dev/test (80/10/10) by a hash
  of the normalized text, so a sentence's split never depends on the seed or on what else was
  generated: no normalized sentence can be in two splits, and test never leaks into the LM text.
- Personal sentences mention PERSONAL_NAMES / PERSONAL_PLACES (never in base sentences) and are
  split adapt/test (50/50) by the same kind of hash.
- The pools themselves are drawn with fixed internal seeds (stable across runs and seeds);
  ``seed`` only shuffles the order the lists come in.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import re
import unicodedata
from dataclasses import dataclass

from assistant.synth import lexicon as L
from assistant.synth import templates as T
from assistant.synth import templates_more as TM

log = logging.getLogger(__name__)

BASE_SPLITS = ("train", "dev", "test")
PERSONAL_SPLITS = ("adapt", "test")

# Distinct sentences drawn per domain (the templates allow many more; these keep domains balanced).
BASE_QUOTA = {"timers": 1100, "alarms": 1100, "weather": 1300, "calls": 1300, "music": 1100,
              "smart_home": 1500, "dates": 1000, "numbers": 1300, "reminders": 1300}
PERSONAL_QUOTA = {"calls": 400, "weather": 200, "reminders": 220, "dates": 100, "music": 60,
                  "alarms": 60}
GENERATORS: dict[str, T.Generator] = {
    "timers": T.timers, "alarms": T.alarms, "weather": T.weather, "calls": T.calls, "music": T.music,
    "smart_home": TM.smart_home, "dates": TM.dates, "numbers": TM.numbers, "reminders": TM.reminders,
}

_NOT_KEPT = re.compile(r"[^a-z' ]+")
PERSONAL_WORDS = frozenset(w for s in (*L.PERSONAL_NAMES, *L.PERSONAL_PLACES) for w in s.split())


def normalize_text(s: str) -> str:
    """The one normalization for transcripts and WER: lowercase a-z, apostrophes, single spaces.

    Accents are dropped, hyphens and other characters become spaces ("twenty-five" -> "twenty five"); quote marks
    around words are dropped while apostrophes inside words ("what's") stay.
    """
    s = s.lower().replace("\u2019", "'").replace("\u2018", "'")
    # Accented letters keep their base letter ("café" -> "cafe") instead of splitting the word.
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    words = _NOT_KEPT.sub(" ", s).split()
    return " ".join(w for w in (w.strip("'") for w in words) if w)


@dataclass(frozen=True)
class Utterance:
    id: str
    text: str  # normalized transcript, what the TTS says
    reply: str  # the assistant's answer (capitals and punctuation allowed)
    domain: str
    personal: bool = False


def _hash(text: str) -> int:
    return int(hashlib.sha1(normalize_text(text).encode()).hexdigest()[:8], 16)


def base_split_of(text: str) -> str:
    b = _hash(text) % 100
    return "train" if b < 80 else "dev" if b < 90 else "test"


def personal_split_of(text: str) -> str:
    return "adapt" if _hash("personal\x00" + normalize_text(text)) % 2 == 0 else "test"


def split_of(utt: Utterance) -> str:
    """The split an utterance belongs to: train/dev/test (base) or adapt/test (personal)."""
    return personal_split_of(utt.text) if utt.personal else base_split_of(utt.text)


def has_personal_word(text: str) -> bool:
    """True when a personal name or place occurs, possessives included ("leocadia's")."""
    words = {w.removesuffix("'s") for w in normalize_text(text).split()}
    return not PERSONAL_WORDS.isdisjoint(words)


_CAPS = {w: w.capitalize() for w in (*L.WEEKDAYS, *L.MONTHS)} | {"i": "I"}


def polish_reply(reply: str) -> str:
    """Capitalize weekdays, months and "I" in replies ("on friday" -> "on Friday")."""
    return re.sub(r"\b[a-z]+\b", lambda m: _CAPS.get(m[0], m[0]), reply)


def _draw(domain: str, quota: int, names: tuple[str, ...], places: tuple[str, ...], *,
          personal: bool) -> list[Utterance]:
    """Sample a domain's generator until ``quota`` distinct normalized texts (or give up)."""
    rng = random.Random(f"{'personal' if personal else 'base'}:{domain}")  # fixed: stable pools
    gen = GENERATORS[domain]
    seen: dict[str, Utterance] = {}
    for _ in range(quota * 30):
        if len(seen) >= quota:
            break
        text, reply = gen(rng, names, places)
        norm = normalize_text(text)
        if norm in seen or has_personal_word(norm) != personal:
            continue  # personal pools: keep only sentences that do mention the user's names
        prefix = "p-" if personal else ""
        uid = f"{prefix}{domain}-{hashlib.sha1(norm.encode()).hexdigest()[:10]}"
        seen[norm] = Utterance(uid, norm, polish_reply(reply), domain, personal)
    if len(seen) < quota:
        log.warning("domain %s: only %d of %d distinct sentences", domain, len(seen), quota)
    return list(seen.values())


@functools.lru_cache(maxsize=2)
def _pool(personal: bool) -> tuple[Utterance, ...]:
    if personal:
        names, places, quota = L.PERSONAL_NAMES, L.PERSONAL_PLACES, PERSONAL_QUOTA
    else:
        names, places, quota = tuple(L.FIRST_NAMES), L.CITIES, BASE_QUOTA
    out: dict[str, Utterance] = {}
    for domain, n in quota.items():
        for u in _draw(domain, n, names, places, personal=personal):
            out.setdefault(u.text, u)  # the same text from two domains: first one wins
    return tuple(sorted(out.values(), key=lambda u: u.id))


def _shuffled(items: list[Utterance], seed: int) -> list[Utterance]:
    random.Random(seed).shuffle(items)
    return items


def base_sentences(seed: int = 0) -> dict[str, list[Utterance]]:
    """{"train", "dev", "test"}: disjoint by normalized text, no personal names or places."""
    splits: dict[str, list[Utterance]] = {s: [] for s in BASE_SPLITS}
    for u in _pool(False):
        splits[base_split_of(u.text)].append(u)
    return {k: _shuffled(v, seed) for k, v in splits.items()}


def personal_sentences(seed: int = 0, split: str | None = None) -> list[Utterance]:
    """Requests naming the user's contacts and places; ``split`` picks "adapt" or "test"."""
    if split is not None and split not in PERSONAL_SPLITS:
        raise ValueError(f"personal split must be one of {PERSONAL_SPLITS}, got {split!r}")
    items = [u for u in _pool(True) if split is None or personal_split_of(u.text) == split]
    return _shuffled(items, seed)


def lm_training_text(seed: int = 0) -> list[tuple[str, str]]:
    """(transcript, reply) pairs of the base TRAIN split only: what the demo LLM learns from."""
    return [(u.text, u.reply) for u in base_sentences(seed)["train"]]


# The daemon's own enrollment prompts: enough for a first personalization job (it needs about 50 labels
# with the default [alignment] heldout_share and min_heldout: alignment.data.labels_needed), with room for
# a stricter gate or a few skipped ones.
SHIPPED_PROMPTS = 100


def shipped_prompts(n: int = SHIPPED_PROMPTS) -> list[str]:
    """The texts of the prompts a daemon offers for enrollment: generic requests (base DEV split, seed 0),
    in a fixed order, so a longer list only adds to the end of a shorter one (stored prompt ids stay)."""
    dev = base_sentences(0)["dev"]
    if n > len(dev):
        raise ValueError(f"asked for {n} shipped prompts; at most {len(dev)} are available")
    return [u.text for u in dev[:n]]


def enrollment_prompts(n: int, seed: int = 0) -> list[Utterance]:
    """Sentences for a user to read aloud: base requests and ones naming their contacts/places.

    Drawn from the base DEV split and the personal ADAPT pool, never from a test split: what the
    user reads trains personalization, so it must not be what personalization is scored on.
    Half personal (rounded up), interleaved.
    """
    personal = personal_sentences(seed, "adapt")
    base = base_sentences(seed)["dev"]
    n_personal = min((n + 1) // 2, len(personal))
    n_base = n - n_personal
    if n_base > len(base):
        raise ValueError(f"asked for {n} prompts; at most {len(base) + n_personal} are available")
    out: list[Utterance] = []
    p, b = personal[:n_personal], base[:n_base]
    for i in range(max(len(p), len(b))):
        out.extend(x[i] for x in (p, b) if i < len(x))
    return out
