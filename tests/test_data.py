"""Tests of mlkit.data: sinusoid tasks, Omniglot loading, splits, episodes, Lake's runs."""

from __future__ import annotations

import hashlib
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit import data as D

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data_root() -> Path:
    root = D.data_root()
    if (root / "omniglot" / "images_background.npz").exists() or (
            root / "omniglot" / "images_background.zip").exists():
        return root
    if (SHARED / "omniglot").exists():
        return SHARED
    pytest.skip("no Omniglot copy: set MLKIT_DATA")


@pytest.fixture(scope="module")
def root() -> Path:
    return _data_root()


# ---------------------------------------------------------------- sinusoids


def test_sinusoid_shapes_dtypes_and_ranges():
    t = D.sample_sinusoid_tasks(50, 5, 10, seed=0)
    assert t.support_x.shape == (50, 5, 1) and t.query_x.shape == (50, 10, 1)
    assert t.support_y.dtype == torch.float32
    assert t.amplitude.min() >= 0.1 and t.amplitude.max() <= 5.0
    assert t.phase.min() >= 0 and t.phase.max() <= math.pi
    assert t.support_x.abs().max() <= 5.0
    # y really is A sin(x - phi)
    expect = t.amplitude[:, None, None] * torch.sin(t.support_x - t.phase[:, None, None])
    torch.testing.assert_close(t.support_y, expect)
    assert len(t) == 50 and len(t.task(3)) == 1


def test_sinusoid_seed_reproduces():
    a, b = D.sample_sinusoid_tasks(4, 5, seed=7), D.sample_sinusoid_tasks(4, 5, seed=7)
    c = D.sample_sinusoid_tasks(4, 5, seed=8)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    assert not torch.equal(a.support_x, c.support_x)
    assert a.query_x.shape == (4, 5, 1)  # n_query defaults to k_shot


@pytest.mark.parametrize("kw,name", [({"n_tasks": 0}, "n_tasks"), ({"k_shot": -1}, "k_shot"),
                                     ({"n_query": 0}, "n_query"), ({"k_shot": 2.5}, "k_shot")])
def test_sinusoid_bad_counts(kw, name):
    args = {"n_tasks": 2, "k_shot": 5, **kw}
    with pytest.raises(ValueError, match=name):
        D.sample_sinusoid_tasks(**args)


# ---------------------------------------------------------------- Omniglot files


def test_load_shapes_and_ink_convention(root):
    x, ids = D.load_omniglot("background", root=root)
    assert x.shape == (964, 20, 28, 28) and x.dtype == np.float32
    assert ids[0] == 1 and ids[-1] == 964
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x.mean() < 0.2  # mostly background (0), a little ink (1)
    ev, ev_ids = D.load_omniglot("evaluation", root=root)
    assert ev.shape == (659, 20, 28, 28) and ev_ids[0] == 965 and ev_ids[-1] == 1623


def test_zip_parser_matches_npz(root):
    images, ids = D.read_omniglot_zip(SHARED / "omniglot" / "images_background_small1.zip")
    assert images.dtype == bool and images.shape[1:] == (20, 105, 105)
    with np.load(root / "omniglot" / "images_background.npz") as d:
        npz = d["images"]
    assert np.array_equal(npz[ids - 1], images)
    assert {D.alphabet_of(int(i)) for i in ids} == {"Balinese", "Early Aramaic", "Greek",
                                                     "Korean", "Latin"}


def test_full_size_kept_for_display(root):
    one = D.character_images(1, root=root)
    assert one.shape == (20, 105, 105) and set(np.unique(one)) <= {0.0, 1.0}
    small = D.character_images(1, root=root, size=28)
    x, _ = D.load_omniglot("background", root=root)
    np.testing.assert_array_equal(small, x[0])


def test_alphabets():
    assert D.alphabet_of(1) == "Arcadian" and D.alphabet_of(26) == "Arcadian"
    assert D.alphabet_of(27) == "Armenian" and D.alphabet_of(964) == "Tifinagh"
    assert D.alphabet_of(965) == "Angelic" and D.alphabet_of(1623) == "ULOG"
    assert len(D.ALPHABETS) == 50
    with pytest.raises(ValueError, match="char_id"):
        D.alphabet_of(1624)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_is_atomic_and_checks_md5(tmp_path):
    src = SHARED / "omniglot" / "images_background_small1.zip"
    if not src.exists():
        pytest.skip("shared data missing")
    dest = tmp_path / "omniglot" / "a.zip"
    D.download_file(src.as_uri(), dest, md5=_md5(src))
    assert dest.read_bytes() == src.read_bytes()
    assert not list(dest.parent.glob("*.part"))
    bad = tmp_path / "omniglot" / "b.zip"
    with pytest.raises(ValueError, match="md5"):
        D.download_file(src.as_uri(), bad, md5="0" * 32)
    assert not bad.exists() and not list(bad.parent.glob("*.part"))


def test_missing_data_without_network_names_folder_and_urls(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(D.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        D.load_omniglot("evaluation", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "omniglot") in msg
    assert D.OMNIGLOT_URLS["evaluation"] in msg and D.LAKE_RUNS_URL in msg
    assert not list((tmp_path / "omniglot").glob("*"))  # nothing half-written left behind


def test_download_path_fetches_official_archive_and_rejects_corrupt(tmp_path, monkeypatch):
    # Serve the small official archive under the "background" URL with its own md5: the
    # loader downloads it, checks it, parses it, then refuses it (964 characters expected).
    src = SHARED / "omniglot" / "images_background_small1.zip"
    if not src.exists():
        pytest.skip("shared data missing")
    monkeypatch.setitem(D.OMNIGLOT_URLS, "background", src.as_uri())
    monkeypatch.setitem(D.OMNIGLOT_MD5, "background", _md5(src))
    D._load_raw.cache_clear()
    with pytest.raises(ValueError, match="964"):
        D.load_omniglot("background", root=tmp_path)
    assert (tmp_path / "omniglot" / "images_background.zip").exists()
    # A corrupt archive already on disk: md5 mismatch, a ValueError that says so.
    monkeypatch.setitem(D.OMNIGLOT_MD5, "background", "f" * 32)
    D._load_raw.cache_clear()
    with pytest.raises(ValueError, match="corrupt: md5"):
        D.load_omniglot("background", root=tmp_path)
    D._load_raw.cache_clear()


def test_bad_subset_and_split():
    with pytest.raises(ValueError, match="subset"):
        D.load_omniglot("training")
    with pytest.raises(ValueError, match="split"):
        D.omniglot_classes("validation")


# ---------------------------------------------------------------- splits


def test_lake_split_by_alphabet(root):
    bg, ev = D.omniglot_classes("background", root=root), D.omniglot_classes("evaluation", root=root)
    assert len(bg) == 964 and len(ev) == 659
    bg_alph = {bg.alphabet(c) for c in range(len(bg))}
    ev_alph = {ev.alphabet(c) for c in range(len(ev))}
    assert len(bg_alph) == 30 and len(ev_alph) == 20 and not bg_alph & ev_alph


def test_finn_split_with_rotations(root):
    tr, te = D.omniglot_classes("finn-train", root=root), D.omniglot_classes("finn-test", root=root)
    assert len(tr.char_ids) == 1200 and len(te.char_ids) == 423
    assert len(tr) == 4800 and len(te) == 1692
    assert not set(tr.char_ids) & set(te.char_ids)
    # class c + 1200 is the same character as class c, turned a quarter
    a, b = tr.drawings(5, [0, 1]), tr.drawings(5 + 1200, [0, 1])
    np.testing.assert_array_equal(np.rot90(a, 1, axes=(-2, -1)), b)
    again = D.omniglot_classes("finn-train", root=root)
    assert np.array_equal(again.char_ids, tr.char_ids)  # the split is fixed by its seed


# ---------------------------------------------------------------- episodes


def test_episode_shapes_labels_and_disjoint_drawings(root):
    pool = D.omniglot_classes("evaluation", root=root)
    ep = D.sample_episode(pool, 5, 3, 4, seed=0)
    assert ep.support_x.shape == (15, 1, 28, 28) and ep.query_x.shape == (20, 1, 28, 28)
    assert ep.support_x.dtype == torch.float32 and ep.support_y.dtype == torch.int64
    assert ep.support_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert ep.query_y.tolist() == sorted(ep.query_y.tolist()) and ep.n_way == 5
    assert len(set(ep.classes.tolist())) == 5
    # each label's images really come from the class it stands for, support != query
    for j, c in enumerate(ep.classes):
        all_draws = pool.drawings(int(c), range(20)).reshape(20, -1)
        for x in list(ep.support_x[ep.support_y == j]) + list(ep.query_x[ep.query_y == j]):
            assert (np.abs(all_draws - x.numpy().reshape(1, -1)).sum(1) == 0).any()
        s = {x.numpy().tobytes() for x in ep.support_x[ep.support_y == j]}
        q = {x.numpy().tobytes() for x in ep.query_x[ep.query_y == j]}
        assert not s & q


def test_episode_seed_reproduces(root):
    pool = D.omniglot_classes("background", root=root)
    a, b = D.sample_episode(pool, 5, 1, 2, seed=3), D.sample_episode(pool, 5, 1, 2, seed=3)
    assert np.array_equal(a.classes, b.classes) and torch.equal(a.query_x, b.query_x)
    s1, s2 = D.EpisodeSampler(pool, 5, 1, 15, seed=1), D.EpisodeSampler(pool, 5, 1, 15, seed=1)
    b1, b2 = s1.batch(4), s2.batch(4)
    assert b1.support_x.shape == (4, 5, 1, 28, 28) and b1.query_y.shape == (4, 75)
    assert torch.equal(b1.support_x, b2.support_x) and np.array_equal(b1.classes, b2.classes)
    assert not np.array_equal(s1.batch(4).classes, b1.classes)  # the stream moves on


@pytest.mark.parametrize("args,name", [
    ((1000, 1, 1), "n_way"), ((0, 1, 1), "n_way"), ((5, 0, 1), "k_shot"),
    ((5, 1, -1), "q_queries"), ((5, 5, 16), "q_queries"), ((5, 20, 0), "k_shot"),
])
def test_episode_bad_input(root, args, name):
    pool = D.omniglot_classes("evaluation", root=root)
    with pytest.raises(ValueError, match=name):
        D.sample_episode(pool, *args)
    with pytest.raises(ValueError, match=name):
        D.EpisodeSampler(pool, *args)


def test_lake_runs(root):
    runs = D.load_lake_runs(root=root)
    assert len(runs) == 20
    for ep in runs:
        assert ep.support_x.shape == (20, 1, 28, 28) and ep.query_x.shape == (20, 1, 28, 28)
        assert ep.support_y.tolist() == list(range(20))
        assert sorted(ep.query_y.tolist()) == list(range(20))  # each class queried once
    assert runs[0].query_y[0].item() == 7  # run01: item01 -> class08
    full = D.load_lake_runs(root=root, size=None)
    assert full[0].support_x.shape == (20, 1, 105, 105)
