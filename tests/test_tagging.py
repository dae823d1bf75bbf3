"""CategoryTagger: captions -> categories (offline pipeline; trained one when installed) and its cache."""

from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc

from synseg.data.train.tagging import DEFAULT_STOP_WORDS, OFFLINE_PIPELINE, CategoryTagger, model_available

HAS_SM = model_available("en_core_web_sm")


@pytest.fixture(scope="module")
def tagger() -> CategoryTagger:
    return CategoryTagger(pipeline="offline")


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        # toy world: synonyms, plurals, filler words and the backdrop
        ("a photo of a red disc next to two blue boxes on a grey backdrop, hd wallpaper", ["disc", "box"]),
        ("two shapes: three hoops and a wedge", ["hoop", "wedge"]),
        ("a clipart of crosses, a plus and some donuts, stock image", ["cross", "plus", "donut"]),
        ("a rhombus beside a hex near the moon", ["rhombus", "hex", "moon"]),
        ("an orange disc and a light blue box", ["disc", "box"]),  # colour nouns used as colours
        ("orange and blue discs", ["disc"]),
        # plural lemmatisation, irregular plurals, synonyms
        ("people walking their dogs", ["person", "dog"]),
        ("Children And Kittens", ["child", "kitten"]),
        ("an aeroplane, an airplane and a plane", ["aeroplane", "airplane", "plane"]),
        ("green leaves on wooden shelves", ["leaf", "shelf"]),
        # multi-word phrases, longest match, compound modifiers
        ("a man next to a traffic light and a fire hydrant", ["man", "traffic light", "fire hydrant"]),
        ("a light above the dining table", ["light", "dining table"]),
        ("a water bottle near a potted plant", ["bottle", "potted plant"]),
        ("an orange on a plate", ["orange", "plate"]),
        # caption order and dedupe
        ("a cat chasing a dog chasing another cat", ["cat", "dog"]),
        # direction, position, unit and generic words; background never a category
        ("aerial view of the southwest corner of a building, top left side", ["building"]),
        ("a pair of shoes and a lot of cups in the background", ["shoe", "cup"]),
        ("background, backdrop, photo, image, picture, wallpaper", []),
        ("", []),
        ("   ", []),
        ("nothing to see here", []),
    ],
)
def test_offline_captions(tagger: CategoryTagger, caption: str, expected: list[str]) -> None:
    assert tagger(caption) == expected


def test_offline_pipeline_name_and_k_limit(tagger: CategoryTagger) -> None:
    assert tagger.pipeline_name == OFFLINE_PIPELINE
    caption = "a dog, a cat, a horse, a sheep and a cow"
    assert tagger(caption) == ["dog", "cat", "horse", "sheep"]
    assert CategoryTagger(max_categories=2, pipeline="offline")(caption) == ["dog", "cat"]
    assert set("background backdrop southwest pair front side top lot".split()) <= DEFAULT_STOP_WORDS


def test_batch_matches_single_calls(tagger: CategoryTagger) -> None:
    captions = ["two dogs", "", "a red disc", "two dogs", "boxes and balls"]
    expected = [["dog"], [], ["disc"], ["dog"], ["box", "ball"]]
    assert tagger.tag(captions) == [tagger(c) for c in captions] == expected


def test_custom_vocab_and_stop_words(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("# animals\nred panda\npanda  # the giant one\nbackground\nsky\n", encoding="utf-8")
    t = CategoryTagger(pipeline="offline", vocab_path=vocab, stop_words=["sky"])
    assert t("A red panda and two pandas under the sky, on a background") == ["red panda", "panda"]
    assert t("a dog") == []  # not in this vocabulary


def test_type_errors(tagger: CategoryTagger) -> None:
    with pytest.raises(TypeError, match="int"):
        tagger(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="NoneType"):
        tagger.tag(["a dog", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="sequence"):
        tagger.tag("a dog")


def test_missing_vocab_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError) as info:
        CategoryTagger(pipeline="offline", vocab_path=missing)
    message = str(info.value)
    assert "vocab_path" in message and str(missing) in message and "one category phrase per line" in message


def test_trained_missing_model_is_a_clear_error() -> None:
    with pytest.raises(OSError, match="synseg_no_such_model.*spacy download synseg_no_such_model"):
        CategoryTagger(pipeline="trained", model_name="synseg_no_such_model")
    auto = CategoryTagger(pipeline="auto", model_name="synseg_no_such_model")
    assert auto.pipeline_name == OFFLINE_PIPELINE


def test_logs_pipeline_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="synseg.data.train.tagging"):
        t = CategoryTagger(pipeline="offline")
        t.tag(["a dog", "a cat"])
        t("a horse")
    records = [r for r in caplog.records if r.name == "synseg.data.train.tagging"]
    assert len(records) == 1 and OFFLINE_PIPELINE in records[0].getMessage()


def test_cache_memory_disk_and_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    captions = ["two dogs and a cat", "a red disc", "a traffic light"]
    t1 = CategoryTagger(pipeline="offline", cache_dir=tmp_path)
    expected = t1.tag(captions)
    assert t1.cache_stats == {"hits": 0, "misses": 3}
    assert t1.tag(captions) == expected and t1("a red disc") == ["disc"]
    assert t1.cache_stats == {"hits": 4, "misses": 3}
    t1.flush()
    assert (tmp_path / f"tags-{t1.config_key}.sqlite").is_file()

    t2 = CategoryTagger(pipeline="offline", cache_dir=tmp_path)  # a new instance reads the disk cache
    assert t2.config_key == t1.config_key

    def boom(_captions: object) -> None:
        raise AssertionError("the pipeline ran although the cache had the answer")

    monkeypatch.setattr(t2, "tag_uncached", boom)
    assert t2.tag(captions) == expected
    assert t2.cache_stats == {"hits": 3, "misses": 0}

    keys = {
        t1.config_key,
        CategoryTagger(max_categories=3, pipeline="offline").config_key,
        CategoryTagger(pipeline="offline", stop_words=["dog"]).config_key,
    }
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("dog\n", encoding="utf-8")
    t3 = CategoryTagger(pipeline="offline", vocab_path=vocab, cache_dir=tmp_path)
    keys.add(t3.config_key)
    assert len(keys) == 4
    assert t3.tag(captions) == [["dog"], [], []]  # not served from the other config's file
    t3.flush()
    assert len(list(tmp_path.glob("tags-*.sqlite"))) == 2


def test_pickle_round_trip(tmp_path: Path) -> None:
    t = CategoryTagger(pipeline="offline", cache_dir=tmp_path)
    before = t.tag(["boxes and discs", "a man on a motorbike"])
    copy = pickle.loads(pickle.dumps(t))
    assert copy.config_key == t.config_key and copy.pipeline_name == t.pipeline_name
    assert copy.tag(["boxes and discs", "a man on a motorbike", "two stars"]) == [*before, ["star"]]


def _tag_in_worker(tagger: CategoryTagger, captions: list[str], flush: bool) -> None:
    for start in range(0, len(captions), 7):
        tagger.tag(captions[start : start + 7])
        if flush:
            tagger.flush()  # many small transactions, interleaved with the other process
    # without flush: the exit hook of multiprocessing writes the pending entries


def test_two_processes_share_one_cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    animals = ["dog", "cat", "horse", "sheep", "cow", "bird", "bear", "zebra", "giraffe", "elephant"]
    captions = [f"a {a} next to {n} {b}s" for a in animals for b in animals for n in ("two", "three")]
    tagger = CategoryTagger(pipeline="offline", cache_dir=tmp_path)
    tagger.tag(captions[:5])  # the parent opened the file before the workers start
    tagger.flush()
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    procs = [
        ctx.Process(target=_tag_in_worker, args=(tagger, captions[:150], True)),
        ctx.Process(target=_tag_in_worker, args=(tagger, captions[50:][::-1], False)),  # overlap 50..150
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]

    fresh = CategoryTagger(pipeline="offline", cache_dir=tmp_path)
    monkeypatch.setattr(fresh, "tag_uncached", lambda c: pytest.fail("cache miss"))
    result = fresh.tag(captions)
    assert result[0] == ["dog"] and result[1] == ["dog"] and result[2] == ["dog", "cat"]
    assert fresh.cache_stats == {"hits": len(captions), "misses": 0}


def _parsed(words: str, pos: str, deps: str, heads: list[int], lemmas: str) -> Doc:
    """A hand-parsed English Doc (what a trained pipeline would give), to test noun-chunk extraction."""
    nlp = spacy.blank("en")
    return Doc(nlp.vocab, words=words.split(), pos=pos.split(), deps=deps.split(), heads=heads,
               lemmas=lemmas.split())  # fmt: skip


def test_noun_chunk_extraction_without_model(tagger: CategoryTagger) -> None:
    doc = _parsed(
        "A red fire hydrant next to two dogs .",
        "DET ADJ NOUN NOUN ADV ADP NUM NOUN PUNCT",
        "det amod compound ROOT advmod prep nummod pobj punct",
        [3, 3, 3, 3, 3, 4, 7, 5, 3],
        "a red fire hydrant next to two dog .",
    )
    assert tagger._from_noun_chunks(doc) == ["fire hydrant", "dog"]
    doc = _parsed(
        "It is a stock photo of people on the left side .",
        "PRON AUX DET NOUN NOUN ADP NOUN ADP DET ADJ NOUN PUNCT",
        "nsubj ROOT det compound attr prep pobj prep det amod pobj punct",
        [1, 1, 4, 4, 1, 4, 5, 4, 10, 10, 7, 1],
        "it be a stock photo of people on the left side .",
    )
    assert tagger._from_noun_chunks(doc) == ["person"]  # pronoun, generic and position words dropped


@pytest.mark.skipif(not HAS_SM, reason="en_core_web_sm not installed")
def test_trained_pipeline() -> None:
    t = CategoryTagger(pipeline="trained")
    assert t.pipeline_name == "trained:en_core_web_sm"
    assert CategoryTagger(pipeline="auto").pipeline_name == "trained:en_core_web_sm"
    assert t("A red fire hydrant next to two dogs.") == ["fire hydrant", "dog"]
    assert t("Stock photo of a cat on the left side, hd wallpaper") == ["cat"]
    assert t("It is a dog and it sits on a grey backdrop") == ["dog"]
    assert t("") == []
    captions = ["a dog, a cat, a horse, a sheep and a cow"]
    assert t.tag(captions) == [["dog", "cat", "horse", "sheep"]]
