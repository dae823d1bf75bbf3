"""The shared CaptionDataModule: batch contents, rank x worker sharding, equal batch counts, exact resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from synseg.data.datamodule import CaptionDataModule


def make_dm(
    root: Path,
    source: str = "toy",
    rank: int = 0,
    world: int = 2,
    workers: int = 2,
    steps: int = 4,
    batch: int = 3,
    **kw,
) -> CaptionDataModule:
    dm = CaptionDataModule(
        source=source,
        batch_size=batch,
        total_steps=steps,
        num_workers=workers,
        toy={"root": str(root / "toy")},
        tagger={"cache_dir": None},
        eval_batch_size=8,
        **kw,
    )
    dm.setup("fit")
    dm.rank, dm.world_size = rank, world
    return dm


def collect(dm: CaptionDataModule) -> list[dict]:
    return list(dm.train_dataloader())


@pytest.mark.parametrize("source", ["shards", "hf"])
def test_two_ranks_two_workers_cover_every_shard_sample_once(
    source: str, toy_shards: Path, toy_folders: Path
) -> None:
    # 48 samples in 8 shards; 2 ranks x 2 workers x B=3 x 8 steps = 48: each sample exactly once.
    glob = str(toy_shards / "*.tar")
    cfg = (
        {"shards": {"urls": glob, "shuffle_buffer": 0}}
        if source == "shards"
        else {"hf": {"path": "webdataset", "data_files": glob, "shuffle_buffer": 0}}
    )
    per_rank = [collect(make_dm(toy_folders, source, rank=r, steps=8, **cfg)) for r in (0, 1)]
    assert [len(b) for b in per_rank] == [8, 8]  # equal batch counts on every rank
    keys = [k for batches in per_rank for b in batches for k in b["keys"]]
    assert len(keys) == 48 and len(set(keys)) == 48


def test_toy_stream_is_a_function_of_seed_and_global_index(toy_folders: Path) -> None:
    from synseg.data.toy import generate_sample

    per_rank = [collect(make_dm(toy_folders, "toy", rank=r, steps=4)) for r in (0, 1)]
    assert [len(b) for b in per_rank] == [4, 4]
    for r, batches in enumerate(per_rank):
        for step, b in enumerate(batches):  # worker round robin keeps step order
            first = (step * 2 + r) * 3
            assert b["keys"] == [f"train-{first + i:09d}" for i in range(3)]
    expected = generate_sample(0, "train", 7).caption
    assert per_rank[0][1]["captions"][1] == expected  # step 1, rank 0, i=1 -> (1*2+0)*3+1 = 7
    keys = [k for batches in per_rank for b in batches for k in b["keys"]]
    assert len(set(keys)) == 24 == len(keys)


def test_resume_continues_the_toy_stream_exactly(toy_folders: Path) -> None:
    full = collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=6))
    dm = make_dm(toy_folders, "toy", world=1, workers=2, steps=6)
    dm.load_state_dict({"global_step": 4})
    tail = collect(dm)
    assert [b["keys"] for b in tail] == [b["keys"] for b in full[4:]]
    assert torch.equal(tail[0]["images"], full[4]["images"])


def test_batch_contents(toy_folders: Path) -> None:
    b = collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=1, batch=5))[0]
    assert b["images"].shape == (5, 3, 64, 64) and b["images"].dtype == torch.float32
    assert b["caption_tokens"].shape == (5, 32)
    assert b["category_valid"].shape == (5, 4) and "category_tokens" not in b  # the model tokenises prompts
    for cats, valid in zip(b["categories"], b["category_valid"], strict=True):
        assert [c != "" for c in cats] == valid.tolist()
    assert b["image_labels"].shape == (5, 10)
    assert -3 < float(b["images"].mean()) < 3  # normalised with the backbone's mean/std


def test_corrupt_samples_are_counted_in_batches(tmp_path: Path, toy_folders: Path) -> None:
    from tests.test_data_sources import _jpeg, write_tar

    members = []
    for i in range(12):
        members += [(f"{i:03d}.jpg", b"garbage" if i % 4 == 0 else _jpeg(i)), (f"{i:03d}.txt", b"a red disc")]
    write_tar(tmp_path / "c-000000.tar", members)
    dm = make_dm(
        toy_folders,
        "shards",
        world=1,
        workers=0,
        steps=3,
        batch=3,
        shards={"urls": str(tmp_path / "*.tar"), "shuffle_buffer": 0},
    )
    batches = collect(dm)
    assert all(len(b["keys"]) == 3 for b in batches)
    total = Counter()
    for b in batches:
        total.update(b["skipped"])
    assert total["image_undecodable"] == 3  # keys 000, 004, 008 skipped, counted once each


def test_unknown_source_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match=r"data\.source: unknown source 'ftp'; expected one of toy, shards, hf"
    ):
        CaptionDataModule(source="ftp")


BRACES = "/data/cc12m/{00000..01242}.tar"


def _argv_of_make_train(args_as_typed: str) -> list[str]:
    """The argv `make train DATA=shards ARGS=...` (typed in bash as written) passes to synseg.train."""
    import shlex
    import subprocess

    from tests.conftest import ROOT

    cmd = f"make -n --no-print-directory train MODEL=synseg DATA=shards ARGS={args_as_typed}"
    lines = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(x for x in lines.splitlines() if "-m synseg.train" in x)
    prefix, rest = line.split("-m synseg.train", 1)
    assert prefix.startswith("set -f +B;")  # the recipe's shell expands neither globs nor braces in ARGS
    echo = "set -f +B; printf '%s\\n' " + rest  # bash parses the recipe line as make runs it
    out = subprocess.run(["bash", "-c", echo], capture_output=True, text=True, check=True).stdout
    assert shlex.split(prefix)[-1].endswith("python")
    return out.splitlines()


@pytest.mark.parametrize(
    ("typed", "urls"),
    [
        (f'"\'data.shards.urls=\\"{BRACES}\\"\' trainer=cpu"', BRACES),  # braces: quoted for bash and Hydra
        ("'data.shards.urls=/data/cc12m/*.tar trainer=cpu'", "/data/cc12m/*.tar"),  # a glob needs no quotes
    ],
)
def test_shard_url_overrides_pass_through_make_and_hydra(typed: str, urls: str) -> None:
    from synseg.data.train.sources import expand_urls
    from tests.test_configs import compose_train

    argv = _argv_of_make_train(typed)
    assert argv[-1] == "trainer=cpu" and sum(a.startswith("data.shards.urls=") for a in argv) == 1
    cfg = compose_train(argv)
    assert cfg.data.source == "shards" and cfg.data.shards.urls == urls
    if urls == BRACES:
        expanded = expand_urls(cfg.data.shards.urls)
        assert (
            len(expanded) == 1243
            and expanded[0] == "/data/cc12m/00000.tar"
            and expanded[-1].endswith("01242.tar")
        )
    # python -m synseg.train with one level of quoting (for Hydra) composes the same value
    assert compose_train(["data=shards", f"data.shards.urls='{urls}'"]).data.shards.urls == urls


def test_cc3m_cc12m_preset_mixes_the_two_hub_collections(toy_shards: Path) -> None:
    import hydra

    from synseg.data.train.sources import expand_urls
    from tests.test_configs import compose_train

    cfg = compose_train(["data=cc3m_cc12m", "model=synseg"])
    assert cfg.data.source == "shards" and cfg.data.shards.urls is None and cfg.data.image_size == 224
    sources = cfg.data.shards.sources
    assert [len(expand_urls(s.urls)) for s in sources] == [576, 2176]
    assert all(s.urls.startswith("https://huggingface.co/datasets/pixparse/") for s in sources)
    assert [s.weight for s in sources] == [2.9, 10.9] and cfg.val.datasets == ["voc20"]
    # The same mix over local shards, through Hydra's override grammar and the DataModule's parser
    first, last = f"{toy_shards}/train-00000{{0..2}}.tar", f"{toy_shards}/*7.tar"
    local = f"[{{urls:'{first}',weight:2.9}},{{urls:'{last}',weight:1}}]"
    cfg = compose_train(["data=cc3m_cc12m", f"data.shards.sources={local}", "data.backbone=toyclip-vit-p8c"])
    source = hydra.utils.instantiate(cfg.data).build_source()
    assert [len(s.urls) for s in source.sets] == [3, 1] and [s.weight for s in source.sets] == [2.9, 1.0]
