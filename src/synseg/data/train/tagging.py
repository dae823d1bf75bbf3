"""Categories from captions: each caption -> at most K nouns / noun phrases (the text prompts of training).

Two spaCy pipelines give the same kind of output:

- ``trained`` (a trained English pipeline such as ``en_core_web_sm``, used when installed): noun chunks ->
  lemmatised head noun with its compound modifiers ("a red fire hydrant" -> "fire hydrant"), no pronouns.
- ``offline`` (always available): ``spacy.blank("en")`` + the lookup lemmatizer (tables of
  spacy-lookups-data) + a ``PhraseMatcher`` on lemmas over a vocabulary file (default: every class name of
  the standard benchmarks, common synonyms and the toy world's nouns). Longest match wins; a match directly
  followed by another match is a noun modifier and dropped ("water bottle" -> "bottle"), as is a colour noun
  used as a colour ("orange disc", "light blue box").

Both drop direction, position, unit and generic words (``DEFAULT_STOP_WORDS``, extended by ``stop_words``),
deduplicate in caption order and keep the first K. Results are cached (:mod:`synseg.data.train.tag_cache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import spacy
from spacy.matcher import PhraseMatcher

from synseg.data.train.tag_cache import TagCache

log = logging.getLogger("synseg.data.train.tagging")

TAGGER_VERSION = 1  # bump when the code changes the output: it is part of config_key
DEFAULT_VOCAB_PATH = Path(__file__).resolve().parents[1] / "resources" / "category_vocab.txt"
OFFLINE_PIPELINE = "offline:blank-en+lookup-lemmatizer+phrase-matcher"

DEFAULT_STOP_WORDS = frozenset(
    # directions and positions
    "north south east west northeast northwest southeast southwest northern southern eastern western "
    "left right front back side top bottom middle center centre corner edge end inside outside interior "
    "exterior foreground closeup close-up distance surface area part half row line "
    # units, quantities and collections
    "pair lot piece couple group set bunch number kind type sort variety collection amount series dozen "
    "inch foot feet meter metre mile km cm mm kg lb percent degree hour minute second day week month year "
    "time times today night morning evening way "
    # generic words of web captions
    "photo photograph image picture pic view stock illustration vector clipart clip art cartoon drawing "
    "wallpaper background backdrop shape thing object item hd 4k icon logo design template style concept "
    "idea example scene shot close closeup portrait frame copy space text caption stripe dot pattern "
    "texture colour color detail version artist author editorial royalty free".split()
)
COLOUR_WORDS = frozenset(
    "red blue green yellow orange purple violet pink brown black white grey gray beige teal cyan magenta "
    "turquoise navy maroon golden gold silver".split()
)
_COLOUR_NOUNS = frozenset({"orange", "light", "rose", "gold", "silver", "lime", "olive", "cream", "navy"})
_CONJUNCTIONS = frozenset({"and", "or", ",", "&", "-", "/"})
# irregular plurals the lookup table gets wrong or leaves alone (applied by both pipelines)
LEMMA_OVERRIDES = {
    "people": "person", "crosses": "cross", "leaves": "leaf", "shelves": "shelf", "calves": "calf",
    "bases": "base", "halves": "half", "thieves": "thief", "lives": "life",
}  # fmt: skip


def load_vocab(path: str | Path) -> list[str]:
    """Phrases of a vocabulary file: one a line, '#' comments, lower-cased, whitespace-normalised."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"vocab_path: category vocabulary file not found: {path} (expected a UTF-8 text file with one "
            f"category phrase per line, '#' comments allowed; the default is {DEFAULT_VOCAB_PATH})"
        )
    phrases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        phrase = " ".join(line.split("#", 1)[0].lower().split())
        if phrase:
            phrases.append(phrase)
    return list(dict.fromkeys(phrases))


def model_available(model_name: str) -> bool:
    """Whether a trained spaCy pipeline is installed as a package (or is a pipeline folder)."""
    return spacy.util.is_package(model_name) or (Path(model_name) / "config.cfg").is_file()


def _check_caption(caption: Any) -> str:
    if not isinstance(caption, str):
        raise TypeError(f"caption must be str, got {type(caption).__name__}")
    return caption


class CategoryTagger:
    """Caption -> at most ``max_categories`` category phrases, cached on disk by (config_key, caption)."""

    def __init__(
        self,
        max_categories: int = 4,
        pipeline: str = "auto",
        model_name: str = "en_core_web_sm",
        vocab_path: str | Path | None = None,
        stop_words: Iterable[str] | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 256,
    ) -> None:
        if max_categories < 1:
            raise ValueError(f"max_categories must be >= 1, got {max_categories}")
        if pipeline not in ("auto", "trained", "offline"):
            raise ValueError(f"pipeline must be 'auto', 'trained' or 'offline', got {pipeline!r}")
        if isinstance(stop_words, str):
            raise TypeError("stop_words must be an iterable of words, not a str")
        self.max_categories = max_categories
        self.model_name = model_name
        self.batch_size = batch_size
        self.stop_words = DEFAULT_STOP_WORDS | {w.strip().lower() for w in stop_words or ()}
        self.vocab_path = Path(vocab_path) if vocab_path is not None else DEFAULT_VOCAB_PATH
        has_model = model_available(model_name) if pipeline != "offline" else False
        if pipeline == "trained" and not has_model:
            raise OSError(
                f"pipeline='trained' needs the spaCy pipeline {model_name!r}, which is not installed. "
                f"Install it with `python -m spacy download {model_name}` (or pip install its wheel, or pass "
                f"a pipeline folder as model_name), or use pipeline='offline' (or 'auto')."
            )
        self.trained = has_model
        key: dict[str, Any] = {
            "v": TAGGER_VERSION,
            "k": max_categories,
            "stop": sorted(self.stop_words),
            "spacy": spacy.about.__version__.rsplit(".", 1)[0],
        }
        if self.trained:
            version = spacy.util.get_package_version(model_name) or "folder"
            self.pipeline_name = f"trained:{model_name}"
            key.update(model=model_name, model_version=version, overrides=LEMMA_OVERRIDES)
            self.vocab: list[str] = []
        else:
            self.pipeline_name = OFFLINE_PIPELINE
            self.vocab = load_vocab(self.vocab_path)
            key.update(vocab=self.vocab, overrides=LEMMA_OVERRIDES, lookups=_lookups_version())
        key["pipeline"] = self.pipeline_name
        self.config_key = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self._cache = TagCache(self.config_key, cache_dir)
        self._nlp: Any = None
        self._matcher: Any = None
        self._phrase_of: dict[int, str] = {}
        log.info(
            "CategoryTagger: pipeline %s, K=%d, config_key %s, cache %s",
            self.pipeline_name,
            max_categories,
            self.config_key,
            self._cache.path or "memory only",
        )

    # --- pickling (DataLoader workers): the spaCy objects are rebuilt lazily in the worker
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_nlp=None, _matcher=None, _phrase_of={})
        return state

    @property
    def cache_stats(self) -> dict:
        """Cache hits and misses of this instance (in this process)."""
        return self._cache.stats

    def flush(self) -> None:
        """Write pending cache entries to disk now (also done in batches and at exit)."""
        self._cache.flush()

    def __call__(self, caption: str) -> list[str]:
        return self.tag([_check_caption(caption)])[0]

    def tag(self, captions: Sequence[str]) -> list[list[str]]:
        """Categories of each caption (cached; misses run the pipeline with ``nlp.pipe(batch_size)``)."""
        if isinstance(captions, (str, bytes)):
            raise TypeError("tag() takes a sequence of captions; use tagger(caption) for a single caption")
        texts = [_check_caption(c) for c in captions]
        results = self._cache.get_many(texts)
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            unique = list(dict.fromkeys(texts[i] for i in todo))
            found = self.tag_uncached(unique)
            self._cache.put_many(unique, found)
            by_text = dict(zip(unique, found, strict=True))
            for i in todo:
                results[i] = list(by_text[texts[i]])
        return results  # type: ignore[return-value]

    def tag_uncached(self, captions: Sequence[str]) -> list[list[str]]:
        """Run the pipeline on every caption, bypassing the cache (used by benchmarks)."""
        texts = [_check_caption(c).strip() for c in captions]
        out: list[list[str]] = [[] for _ in texts]
        todo = [i for i, t in enumerate(texts) if t]
        if not todo:
            return out
        self._build()
        if self.trained:
            docs = self._nlp.pipe((texts[i] for i in todo), batch_size=self.batch_size)
            extract = self._from_noun_chunks
        else:
            docs = self._nlp.pipe((texts[i].lower() for i in todo), batch_size=self.batch_size)
            extract = self._from_matches
        for i, doc in zip(todo, docs, strict=True):
            out[i] = extract(doc)
        return out

    # --- pipelines
    def _build(self) -> None:
        if self._nlp is not None:
            return
        if self.trained:
            self._nlp = spacy.load(self.model_name, exclude=["ner"])
            return
        nlp = spacy.blank("en")
        lemmatizer = nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
        spacy_log = logging.getLogger("spacy")
        level = spacy_log.level
        spacy_log.setLevel(logging.WARNING)  # no "Created vocabulary" lines in every worker
        try:
            nlp.initialize()  # reads the lemma_lookup table from spacy-lookups-data (no network)
        except (ValueError, OSError, ImportError) as err:
            raise RuntimeError(
                "offline tagging pipeline: could not load the English lookup lemmatizer tables; "
                "install them with `pip install spacy-lookups-data`"
            ) from err
        finally:
            spacy_log.setLevel(level)
        table = lemmatizer.lookups.get_table("lemma_lookup")
        for word, lemma in LEMMA_OVERRIDES.items():
            table[word] = lemma
        matcher = PhraseMatcher(nlp.vocab, attr="LEMMA")
        seen: set[tuple[str, ...]] = set()
        for phrase, doc in zip(self.vocab, nlp.pipe(self.vocab), strict=True):
            lemmas = tuple(t.lemma_ for t in doc)
            if phrase in self.stop_words or " ".join(lemmas) in self.stop_words or lemmas in seen:
                continue
            seen.add(lemmas)
            matcher.add(phrase, [doc])
            self._phrase_of[nlp.vocab.strings[phrase]] = phrase
        self._nlp, self._matcher = nlp, matcher

    def _from_matches(self, doc: Any) -> list[str]:
        """Offline: vocabulary matches, longest first, modifiers dropped, in caption order."""
        matches = self._matcher(doc)
        if not matches:
            return []
        taken: list[tuple[int, int, int]] = []
        used: set[int] = set()
        for match_id, start, end in sorted(matches, key=lambda m: (m[1] - m[2], m[1])):
            if not used.intersection(range(start, end)):
                taken.append((start, end, match_id))
                used.update(range(start, end))
        taken.sort()
        starts = {start for start, _, _ in taken}
        n = len(doc)
        out: list[str] = []
        for _start, end, match_id in taken:
            if end in starts:
                continue  # noun modifier: "water bottle" -> "bottle"
            phrase = self._phrase_of[match_id]
            if phrase in _COLOUR_NOUNS and end < n:  # "light blue box", "orange and blue discs"
                nxt = doc[end].lower_
                after = doc[end + 1].lower_ if end + 1 < n else ""
                if nxt in COLOUR_WORDS or (nxt in _CONJUNCTIONS and after in COLOUR_WORDS):
                    continue
            if phrase not in out:
                out.append(phrase)
                if len(out) == self.max_categories:
                    break
        return out

    def _from_noun_chunks(self, doc: Any) -> list[str]:
        """Trained: lemmatised head noun of each noun chunk with its compound modifiers."""
        out: list[str] = []
        for chunk in doc.noun_chunks:
            root = chunk.root
            if root.pos_ == "PRON" or root.tag_ in ("PRP", "PRP$", "WP", "WDT", "EX"):
                continue
            head = root.lower_ if root.lower_ in LEMMA_OVERRIDES else root.lemma_.lower()
            head = LEMMA_OVERRIDES.get(head, head)
            if head in self.stop_words or not any(c.isalpha() for c in head):
                continue
            mods = [
                t.lower_
                for t in chunk
                if t.dep_ == "compound"
                and t.head.i == root.i
                and t.i < root.i
                and t.is_alpha
                and t.lower_ not in self.stop_words
            ]
            phrase = " ".join([*mods, head])
            if phrase not in self.stop_words and phrase not in out:
                out.append(phrase)
                if len(out) == self.max_categories:
                    break
        return out


def _lookups_version() -> str:
    try:
        from importlib.metadata import version

        return version("spacy-lookups-data")
    except Exception:  # noqa: BLE001 - not installed: _build raises the clear error
        return "missing"
