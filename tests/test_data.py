"""Tests of mlkit.data: sinusoid tasks, Omniglot loading, splits, episodes,
Lake's runs.

Omniglot is found only through the data root (``MLKIT_DATA``, see
:func:`mlkit.data.data_root`); a test whose files are absent there skips,
saying which. File checks, downloads and corrupt files:
``test_data_files.py``.
"""

from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit import data


def _need(*needs: str, extra: tuple[str, ...] = ()) -> None:
    """Skip unless each need has one of its files (and each ``extra`` file)
    in the Omniglot folder of the data root."""
    folder = data.omniglot_dir()
    absent = [" or ".join(f.name for f in data.DATA_FILES.values()
                          if f.need == need)
              for need in needs
              if not any((folder / f.name).is_file()
                         for f in data.DATA_FILES.values() if f.need == need)]
    absent += [name for name in extra if not (folder / name).is_file()]
    if absent:
        pytest.skip(f"{'; '.join(absent)} not in {folder} (set MLKIT_DATA)")


@pytest.fixture(scope="module")
def root():
    """The data root, holding both Omniglot subsets (else skip)."""
    _need("background", "evaluation")
    return data.data_root()


def _toy_pool(n_chars: int = 6, size: int = 8) -> data.ClassPool:
    rng = np.random.default_rng(0)
    images = (rng.random((n_chars, 20, size, size)) < 0.2).astype(np.float32)
    n = n_chars
    return data.ClassPool("toy", images, np.arange(1, n + 1),
                       np.tile(np.arange(n), 2), np.repeat([0, 1], n))


# ---------------------------------------------------------------- sinusoids


def test_sinusoid_shapes_dtypes_and_ranges():
    t = data.sample_sinusoid_tasks(50, 5, 10, seed=0)
    assert t.support_x.shape == (50, 5, 1) and t.query_x.shape == (50, 10, 1)
    assert t.support_y.dtype == torch.float32
    assert t.amplitude.min() >= 0.1 and t.amplitude.max() <= 5.0
    assert t.phase.min() >= 0 and t.phase.max() <= math.pi
    assert t.support_x.abs().max() <= 5.0
    # y really is A sin(x - phi)
    expect = (t.amplitude[:, None, None]
              * torch.sin(t.support_x - t.phase[:, None, None]))
    torch.testing.assert_close(t.support_y, expect)
    assert len(t) == 50 and len(t.task(3)) == 1


def test_sinusoid_seed_reproduces():
    a = data.sample_sinusoid_tasks(4, 5, seed=7)
    b = data.sample_sinusoid_tasks(4, 5, seed=7)
    c = data.sample_sinusoid_tasks(4, 5, seed=8)
    assert torch.equal(a.support_x, b.support_x)
    assert torch.equal(a.query_y, b.query_y)
    assert not torch.equal(a.support_x, c.support_x)
    assert a.query_x.shape == (4, 5, 1)  # n_query defaults to k_shot
    g = data.sample_sinusoid_tasks(4, 5, seed=np.random.default_rng(7))
    assert torch.equal(g.support_x, a.support_x)


@pytest.mark.parametrize("kw,name", [
    ({"n_tasks": 0}, "n_tasks"), ({"k_shot": -1}, "k_shot"),
    ({"n_query": 0}, "n_query"), ({"k_shot": 2.5}, "k_shot"),
    ({"n_tasks": True}, "n_tasks"), ({"n_tasks": float("nan")}, "n_tasks"),
    ({"k_shot": "5"}, "k_shot"), ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"), ({"seed": "a"}, "seed"),
    ({"seed": True}, "seed"),
])
def test_sinusoid_bad_counts(kw, name):
    args = {"n_tasks": 2, "k_shot": 5, **kw}
    with pytest.raises(ValueError, match=name):
        data.sample_sinusoid_tasks(**args)


@pytest.mark.parametrize("i", [-1, 2, 1.0, True])
def test_sinusoid_task_index_checked(i):
    t = data.sample_sinusoid_tasks(2, 3, seed=0)
    with pytest.raises(ValueError, match="i must"):
        t.task(i)


# ---------------------------------------------------------------- Omniglot


def test_load_shapes_and_ink_convention(root):
    x, ids = data.load_omniglot("background", root=root)
    assert x.shape == (964, 20, 28, 28) and x.dtype == np.float32
    assert ids[0] == 1 and ids[-1] == 964
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x.mean() < 0.2  # mostly background (0), a little ink (1)
    ev, ev_ids = data.load_omniglot("evaluation", root=root)
    assert ev.shape == (659, 20, 28, 28)
    assert ev_ids[0] == 965 and ev_ids[-1] == 1623


def test_default_root_is_mlkit_data(root):
    # No root argument: the loader reads $MLKIT_DATA as the tests do.
    x, _ = data.load_omniglot("evaluation")
    y, _ = data.load_omniglot("evaluation", root=root)
    assert x is y


def test_zip_parser_matches_npz():
    _need(extra=("images_background_small1.zip", "images_background.npz"))
    folder = data.omniglot_dir()
    images, ids = data.read_omniglot_zip(folder
                                      / "images_background_small1.zip")
    assert images.dtype == bool and images.shape[1:] == (20, 105, 105)
    with np.load(folder / "images_background.npz") as d:
        npz = d["images"]
    assert np.array_equal(npz[ids - 1], images)
    assert {data.alphabet_of(int(i)) for i in ids} == {
        "Balinese", "Early Aramaic", "Greek", "Korean", "Latin"}


def test_full_size_kept_for_display(root):
    one = data.character_images(1, root=root)
    assert one.shape == (20, 105, 105) and set(np.unique(one)) <= {0.0, 1.0}
    small = data.character_images(1, root=root, size=28)
    x, _ = data.load_omniglot("background", root=root)
    np.testing.assert_array_equal(small, x[0])
    last = data.character_images(np.int64(1623), root=root, size=28)
    ev, _ = data.load_omniglot("evaluation", root=root)
    np.testing.assert_array_equal(last, ev[-1])


def test_alphabets():
    assert (data.alphabet_of(1) == "Arcadian"
            and data.alphabet_of(26) == "Arcadian")
    assert data.alphabet_of(27) == "Armenian"
    assert data.alphabet_of(964) == "Tifinagh"
    assert (data.alphabet_of(965) == "Angelic"
            and data.alphabet_of(1623) == "ULOG")
    assert data.alphabet_of(np.int64(1)) == "Arcadian"
    assert len(data.ALPHABETS) == 50


@pytest.mark.parametrize("bad", [0, 1624, -3, True, 2.5, float("nan"), "3",
                                 None])
def test_alphabet_of_bad_id(bad):
    with pytest.raises(ValueError, match="char_id"):
        data.alphabet_of(bad)


@pytest.mark.parametrize("kw,name", [
    ({"subset": "training"}, "subset"), ({"subset": None}, "subset"),
    ({"subset": ["background"]}, "subset"), ({"size": 0}, "size"),
    ({"size": 106}, "size"), ({"size": True}, "size"),
    ({"size": float("nan")}, "size"), ({"size": 28.0}, "size"),
    ({"download": "no"}, "download"), ({"verify": 1}, "verify"),
    ({"root": 5}, "root"), ({"root": ""}, "root"),
])
def test_load_omniglot_bad_input(kw, name):
    with pytest.raises(ValueError, match=name):
        data.load_omniglot(**kw)


@pytest.mark.parametrize("args,kw,name", [
    ((0,), {}, "char_id"), ((1624,), {}, "char_id"),
    ((True,), {}, "char_id"), ((1.0,), {}, "char_id"),
    ((float("nan"),), {}, "char_id"), (("1",), {}, "char_id"),
    ((1,), {"size": 0}, "size"), ((1,), {"size": 200}, "size"),
    ((1,), {"download": None}, "download"), ((1,), {"root": 3}, "root"),
])
def test_character_images_bad_input(args, kw, name):
    with pytest.raises(ValueError, match=name):
        data.character_images(*args, **kw)


@pytest.mark.parametrize("kw,name", [
    ({"split": "valid"}, "split"), ({"split": None}, "split"),
    ({"split": ["background"]}, "split"), ({"split": 3}, "split"),
    ({"split": "background", "seed": -1}, "seed"),
    ({"split": "finn-train", "seed": True}, "seed"),
    ({"split": "finn-train", "seed": 0.5}, "seed"),
    ({"split": "background", "rotations": "yes"}, "rotations"),
    ({"split": "background", "size": 0}, "size"),
    ({"split": "background", "root": 7}, "root"),
])
def test_omniglot_classes_bad_input(kw, name):
    with pytest.raises(ValueError, match=name):
        data.omniglot_classes(**kw)


@pytest.mark.parametrize("kw,name", [
    ({"size": 2}, "size"), ({"size": "28"}, "size"),
    ({"download": "yes"}, "download"), ({"verify": None}, "verify"),
    ({"root": 1.5}, "root"),
])
def test_load_lake_runs_bad_input(kw, name):
    with pytest.raises(ValueError, match=name):
        data.load_lake_runs(**kw)


# ---------------------------------------------------------------- splits


def test_lake_split_by_alphabet(root):
    bg = data.omniglot_classes("background", root=root)
    ev = data.omniglot_classes("evaluation", root=root)
    assert len(bg) == 964 and len(ev) == 659
    bg_alph = {bg.alphabet(c) for c in range(len(bg))}
    ev_alph = {ev.alphabet(c) for c in range(len(ev))}
    assert len(bg_alph) == 30 and len(ev_alph) == 20
    assert not bg_alph & ev_alph


def test_finn_split_with_rotations(root):
    tr = data.omniglot_classes("finn-train", root=root)
    te = data.omniglot_classes("finn-test", root=root)
    assert len(tr.char_ids) == 1200 and len(te.char_ids) == 423
    assert len(tr) == 4800 and len(te) == 1692
    assert not set(tr.char_ids) & set(te.char_ids)
    # class c + 1200 is the same character as class c, turned a quarter
    a, b = tr.drawings(5, [0, 1]), tr.drawings(5 + 1200, [0, 1])
    np.testing.assert_array_equal(np.rot90(a, 1, axes=(-2, -1)), b)
    again = data.omniglot_classes("finn-train", root=root)
    assert np.array_equal(again.char_ids, tr.char_ids)  # fixed by its seed
    # each class's images are those of its character
    bg, _ = data.load_omniglot("background", root=root)
    ev, _ = data.load_omniglot("evaluation", root=root)
    full = np.concatenate([bg, ev])
    for c in (0, 599, 1199):
        cid = int(tr.char_ids[c])
        np.testing.assert_array_equal(tr.drawings(c, range(20)),
                                      full[cid - 1])


def test_validation_split_partitions_background_by_alphabet():
    val = data.split_char_ids("validation")
    train = data.split_char_ids("background-train")
    bg = data.split_char_ids("background")
    assert not set(val) & set(train)
    assert np.array_equal(np.sort(np.concatenate([val, train])), bg)
    val_alph = {data.alphabet_of(int(i)) for i in val}
    train_alph = {data.alphabet_of(int(i)) for i in train}
    assert val_alph == set(data.VALIDATION_ALPHABETS) and len(val_alph) == 5
    assert len(train_alph) == 25 and not val_alph & train_alph
    # whole alphabets: every id of a held-out alphabet is held out
    for name, first, last in data.ALPHABETS[:30]:
        ids = set(range(first, last + 1))
        assert ids <= set(val) or ids <= set(train), name
    # the documented derivation of the five alphabets
    pick = np.sort(np.random.default_rng(0).permutation(30)[:5])
    assert (tuple(data.ALPHABETS[i][0] for i in pick)
            == data.VALIDATION_ALPHABETS)
    assert len(val) == 135 and len(train) == 829


def test_split_char_ids_and_shared_characters():
    for split in data.SPLITS:
        ids = data.split_char_ids(split)
        assert ids.dtype == np.int64 and np.all(np.diff(ids) > 0)
        assert ids.min() >= 1 and ids.max() <= 1623
    assert data.shared_characters("finn-train", "finn-test") == 0
    assert data.shared_characters("background-train", "validation") == 0
    assert data.shared_characters("background", "validation") == 135
    assert data.shared_characters("background", "evaluation") == 0
    assert 0 < data.shared_characters("finn-train", "evaluation") < 659
    assert data.shared_characters("finn-test", "finn-test", seed=3) == 423
    a, b = (data.split_char_ids("finn-train"),
            data.split_char_ids("finn-train", 1))
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="split"):
        data.split_char_ids("test")
    with pytest.raises(ValueError, match="seed"):
        data.split_char_ids("finn-test", seed=-2)
    with pytest.raises(ValueError, match="split"):
        data.shared_characters("finn-train", "nope")


@pytest.mark.parametrize("split,seed", [(s, 0) for s in data.SPLITS]
                         + [("finn-train", 1), ("finn-test", 1)])
def test_split_char_ids_match_pools(root, split, seed):
    pool = data.omniglot_classes(split, root=root, seed=seed)
    assert np.array_equal(pool.char_ids, data.split_char_ids(split, seed))
    assert pool.images.shape[0] == len(pool.char_ids)


def test_validation_pools(root):
    val = data.omniglot_classes("validation", root=root)
    tr = data.omniglot_classes("background-train", root=root)
    assert len(val) == 135 and len(tr) == 829  # no rotations by default
    bg, _ = data.load_omniglot("background", root=root)
    np.testing.assert_array_equal(val.drawings(0, range(20)),
                                  bg[val.char_ids[0] - 1])
    assert {val.alphabet(c) for c in range(len(val))} == set(
        data.VALIDATION_ALPHABETS)
    assert len(data.omniglot_classes("validation", root=root,
                                  rotations=True)) == 4 * 135


# ---------------------------------------------------------------- episodes


def test_episode_shapes_labels_and_disjoint_drawings(root):
    pool = data.omniglot_classes("evaluation", root=root)
    ep = data.sample_episode(pool, 5, 3, 4, seed=0)
    assert ep.support_x.shape == (15, 1, 28, 28)
    assert ep.query_x.shape == (20, 1, 28, 28)
    assert ep.support_x.dtype == torch.float32
    assert ep.support_y.dtype == torch.int64
    assert ep.support_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3,
                                     4, 4, 4]
    assert ep.query_y.tolist() == sorted(ep.query_y.tolist())
    assert ep.n_way == 5 and len(set(ep.classes.tolist())) == 5
    # each label's images really come from the class it stands for, and
    # support != query
    for j, c in enumerate(ep.classes):
        all_draws = pool.drawings(int(c), range(20)).reshape(20, -1)
        for x in (list(ep.support_x[ep.support_y == j])
                  + list(ep.query_x[ep.query_y == j])):
            diff = np.abs(all_draws - x.numpy().reshape(1, -1)).sum(1)
            assert (diff == 0).any()
        s = {x.numpy().tobytes() for x in ep.support_x[ep.support_y == j]}
        q = {x.numpy().tobytes() for x in ep.query_x[ep.query_y == j]}
        assert not s & q


def test_episode_seed_reproduces(root):
    pool = data.omniglot_classes("background", root=root)
    a = data.sample_episode(pool, 5, 1, 2, seed=3)
    b = data.sample_episode(pool, 5, 1, 2, seed=3)
    assert np.array_equal(a.classes, b.classes)
    assert torch.equal(a.query_x, b.query_x)
    s1 = data.EpisodeSampler(pool, 5, 1, 15, seed=1)
    s2 = data.EpisodeSampler(pool, 5, 1, 15, seed=1)
    b1, b2 = s1.batch(4), s2.batch(4)
    assert b1.support_x.shape == (4, 5, 1, 28, 28)
    assert b1.query_y.shape == (4, 75)
    assert torch.equal(b1.support_x, b2.support_x)
    assert np.array_equal(b1.classes, b2.classes)
    assert not np.array_equal(s1.batch(4).classes, b1.classes)  # moves on


def test_toy_pool_episodes_need_no_data():
    pool = _toy_pool()
    ep = data.sample_episode(pool, 3, 2, 1, seed=np.random.default_rng(0))
    assert ep.support_x.shape == (6, 1, 8, 8)
    batch = data.EpisodeSampler(pool, 4, 1, 3, seed=np.int64(2)).batch(2)
    assert batch.query_x.shape == (2, 12, 1, 8, 8)
    # class c + 6 is class c turned a quarter
    np.testing.assert_array_equal(
        np.rot90(pool.drawings(1, [0, 5]), 1, axes=(-2, -1)),
        pool.drawings(7, np.array([0, 5])))
    assert pool.drawings(0, []).shape == (0, 8, 8)
    assert pool.drawings(0, 19).shape == (8, 8)
    assert pool.alphabet(np.int64(11)) == "Arcadian"


@pytest.mark.parametrize("args,name", [
    ((13, 1, 1), "n_way"), ((0, 1, 1), "n_way"), ((5, 0, 1), "k_shot"),
    ((5, 1, -1), "q_queries"), ((5, 5, 16), "q_queries"),
    ((5, 20, 0), "k_shot"), ((5.0, 1, 1), "n_way"), ((True, 1, 1), "n_way"),
    ((5, float("nan"), 1), "k_shot"), ((5, 1, "2"), "q_queries"),
])
def test_episode_bad_input(args, name):
    pool = _toy_pool()  # 12 classes
    with pytest.raises(ValueError, match=name):
        data.sample_episode(pool, *args)
    with pytest.raises(ValueError, match=name):
        data.EpisodeSampler(pool, *args)


@pytest.mark.parametrize("seed", [-1, 2.5, "x", True])
def test_episode_bad_seed(seed):
    pool = _toy_pool()
    with pytest.raises(ValueError, match="seed"):
        data.sample_episode(pool, 2, 1, 1, seed=seed)
    with pytest.raises(ValueError, match="seed"):
        data.EpisodeSampler(pool, 2, 1, 1, seed=seed)


def test_episode_bad_pool_and_batch():
    with pytest.raises(ValueError, match="pool"):
        data.sample_episode(None, 2, 1, 1)
    with pytest.raises(ValueError, match="pool"):
        data.EpisodeSampler([1, 2, 3], 2, 1, 1)
    sampler = data.EpisodeSampler(_toy_pool(), 2, 1, 1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_tasks"):
            sampler.batch(bad)


@pytest.mark.parametrize("cls,which,name", [
    (12, [0], "cls"), (-1, [0], "cls"), (1.0, [0], "cls"),
    (True, [0], "cls"), (0, [20], "which"), (0, [-1], "which"),
    (0, [0.5], "which"), (0, [True, False], "which"), (0, ["a"], "which"),
    (0, 20, "which"), (0, [[0, 1], [2]], "which"),
])
def test_drawings_bad_index_is_value_error(cls, which, name):
    pool = _toy_pool()
    with pytest.raises(ValueError, match=name):
        pool.drawings(cls, which)
    if name == "cls":
        with pytest.raises(ValueError, match="cls"):
            pool.alphabet(cls)


def test_lake_runs():
    _need("lake-runs")
    runs = data.load_lake_runs()
    assert len(runs) == 20
    for ep in runs:
        assert ep.support_x.shape == (20, 1, 28, 28)
        assert ep.query_x.shape == (20, 1, 28, 28)
        assert ep.support_y.tolist() == list(range(20))
        # each class queried once
        assert sorted(ep.query_y.tolist()) == list(range(20))
        assert ep.query_y.dtype == torch.int64
    assert runs[0].query_y[0].item() == 7  # run01: item01 -> class08
    full = data.load_lake_runs(size=None)
    assert full[0].support_x.shape == (20, 1, 105, 105)


# ---------------------------------------------------------------- wild input

WILD = [None, -1, 0, True, False, 1.5, -0.5, math.nan, math.inf, -math.inf,
        "x", "", (), [], {}, torch.tensor(1.0), np.float64(2.0)]


def _targets(root):
    pool = _toy_pool()
    return {
        "sample_sinusoid_tasks": (data.sample_sinusoid_tasks, (3, 2),
                                  {"n_query": 2, "seed": 0}),
        "SinusoidTasks.task": (data.sample_sinusoid_tasks(2, 2).task, (0,),
                               {}),
        "sample_episode": (data.sample_episode, (pool, 2, 1, 1), {"seed": 0}),
        "EpisodeSampler": (data.EpisodeSampler, (pool, 2, 1, 1), {"seed": 0}),
        "EpisodeSampler.batch": (data.EpisodeSampler(pool, 2, 1, 1).batch,
                                 (2,), {}),
        "ClassPool.drawings": (pool.drawings, (0, [1, 2]), {}),
        "ClassPool.alphabet": (pool.alphabet, (0,), {}),
        "omniglot_classes": (data.omniglot_classes, ("background",),
                             {"size": 28, "rotations": None, "seed": 0,
                              "root": root}),
        "load_omniglot": (data.load_omniglot, ("background",),
                          {"size": 28, "download": False, "verify": True,
                           "root": root}),
        "character_images": (data.character_images, (5,),
                             {"size": None, "download": False,
                              "verify": True, "root": root}),
        "alphabet_of": (data.alphabet_of, (5,), {}),
        "split_char_ids": (data.split_char_ids, ("validation", 0), {}),
        "shared_characters": (data.shared_characters,
                              ("validation", "background"), {"seed": 0}),
        "load_lake_runs": (data.load_lake_runs, (),
                           {"size": 28, "download": False, "verify": True,
                            "root": root}),
        "check_data": (data.check_data, (root,), {}),
        "fetch_data": (data.fetch_data, (root,), {"progress": False}),
        "read_omniglot_zip": (data.read_omniglot_zip, (root / "none.zip",),
                              {"verify": True}),
        "data_root": (data.data_root, (root,), {}),
    }


@pytest.mark.parametrize("name", list(_targets(Path("."))))
def test_wild_arguments_give_value_or_data_errors(name, tmp_path,
                                                  monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    monkeypatch.setenv("MLKIT_DATA", str(tmp_path))
    fn, args, kw = _targets(tmp_path)[name]
    slots = [(i, None) for i in range(len(args))] + [(None, k) for k in kw]
    for i, key in slots:
        for wild in WILD:
            a, k = list(args), dict(kw)
            if key is None:
                a[i] = wild
            else:
                k[key] = wild
            try:
                fn(*a, **k)
            except (ValueError, data.DataMissingError) as e:
                assert str(e)
    assert list(tmp_path.iterdir()) == []  # nothing created on the way
