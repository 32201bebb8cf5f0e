"""Tests of mlkit.data's file handling: the registry of data files,
check_data / fetch_data, checksums on first use, corrupt and missing files,
downloads that leave nothing behind.

Most tests build their own small files in tmp folders and need no data and
no network (urllib.request.urlopen is replaced or served file:// URLs);
those that read the real Omniglot copy find it through MLKIT_DATA and skip
when it is absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlkit import data

NAMES = ("images_background.npz", "images_background.zip",
         "images_evaluation.npz", "images_evaluation.zip", "all_runs.zip")


@pytest.fixture
def fresh():
    """Forget memoised digests and cached arrays before and after."""
    data._clear_caches()
    yield
    data._clear_caches()


def _real(name: str) -> Path:
    path = data.omniglot_dir() / name
    if not path.is_file():
        pytest.skip(f"{name} not in {path.parent} (set MLKIT_DATA)")
    return path


def _md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def _png(seed: int) -> bytes:
    ink = np.random.default_rng(seed).random((105, 105)) < 0.9
    buf = io.BytesIO()
    Image.fromarray(ink).save(buf, format="PNG")
    return buf.getvalue()


def _omniglot_zip(path: Path, ids, top: str = "images_background") -> Path:
    """A small archive laid out as the official ones."""
    with zipfile.ZipFile(path, "w") as z:
        for cid in ids:
            for k in range(1, 21):
                z.writestr(f"{top}/Alpha/character{cid:02d}/"
                           f"{cid:04d}_{k:02d}.png", _png(cid * 100 + k))
    return path


def _runs_zip(path: Path, runs=range(1, 21)) -> Path:
    """A zip laid out as all_runs.zip; item j is class (j % 20) + 1."""
    with zipfile.ZipFile(path, "w") as z:
        for r in runs:
            base = f"run{r:02d}/"
            lines = []
            for j in range(1, 21):
                z.writestr(f"{base}training/class{j:02d}.png", _png(j))
                z.writestr(f"{base}test/item{j:02d}.png", _png(100 + j))
                lines.append(f"{base}test/item{j:02d}.png "
                             f"{base}training/class{j % 20 + 1:02d}.png")
            z.writestr(base + "class_labels.txt", "\n".join(lines) + "\n")
    return path


def _serve(monkeypatch, name: str, src: Path, **kw) -> None:
    """Point DATA_FILES[name] at a local file, with its md5."""
    entry = data.DATA_FILES[name]
    fields = {"url": src.as_uri(), "md5": _md5(src.read_bytes()),
              "sha256": None, "size": src.stat().st_size, **kw}
    monkeypatch.setitem(data.DATA_FILES, name,
                        dataclasses.replace(entry, **fields))


def _offline(monkeypatch) -> list[str]:
    calls: list[str] = []

    def urlopen(url, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    return calls


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------- registry


def test_registry_lists_each_file_and_need():
    assert tuple(data.DATA_FILES) == NAMES
    assert set(data.DATA_NEEDS) == {"background", "evaluation", "lake-runs"}
    for name, f in data.DATA_FILES.items():
        assert f.name == name and f.need in data.DATA_NEEDS and f.what
        assert f.md5 or f.sha256
        assert (f.url is None) == name.endswith(".npz")
        assert f.algorithm == ("sha256" if f.sha256 else "md5")
    for subset in ("background", "evaluation"):
        z = data.DATA_FILES[f"images_{subset}.zip"]
        assert z.url == data.OMNIGLOT_URLS[subset]
        assert z.md5 == data.OMNIGLOT_MD5[subset] and z.need == subset
        assert z.size is None  # not known here: not invented
    runs = data.DATA_FILES["all_runs.zip"]
    assert runs.url == data.LAKE_RUNS_URL and runs.need == "lake-runs"
    assert runs.sha256 == data.LAKE_RUNS_SHA256


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith(".npz")]
                         + ["all_runs.zip"])
def test_registry_matches_the_copies_present(name):
    path, f = _real(name), data.DATA_FILES[name]
    content = path.read_bytes()
    assert len(content) == f.size
    assert hashlib.sha256(content).hexdigest() == f.sha256
    assert _md5(content) == f.md5


# ---------------------------------------------------------------- check_data


def test_check_data_reports_every_missing_need_at_once(tmp_path):
    rows = data.check_data(tmp_path)
    assert [r["need"] for r in rows] == list(data.DATA_NEEDS)
    for r in rows:
        assert r["status"] == "missing" and not r["present"]
        assert not r["verified"] and r["path"] is None
        assert r["folder"] == str(tmp_path / "omniglot")
        names = {o["name"] for o in r["options"]}
        assert names == {n for n, f in data.DATA_FILES.items()
                         if f.need == r["need"]}
        for o in r["options"]:
            f = data.DATA_FILES[o["name"]]
            assert (o["url"], o["md5"], o["sha256"], o["size"]) == (
                f.url, f.md5, f.sha256, f.size)
            assert o["name"] in r["message"]
            assert (f.url or "not downloadable") in r["message"]
            assert (f.sha256 or f.md5) in r["message"]
    assert not (tmp_path / "omniglot").exists()  # checking creates nothing


def test_check_data_with_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKIT_DATA", str(tmp_path))
    assert {r["folder"] for r in data.check_data()} == {
        str(tmp_path / "omniglot")}


def test_check_data_verifies_and_flags_corrupt(tmp_path, fresh):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    (folder / "all_runs.zip").write_bytes(b"not the runs")
    (folder / "images_evaluation.zip").write_bytes(b"not the archive")
    rows = {r["need"]: r for r in data.check_data(tmp_path)}
    runs = rows["lake-runs"]
    assert runs["status"] == "corrupt" and runs["present"]
    assert not runs["verified"]
    assert runs["path"] == str(folder / "all_runs.zip")
    got = hashlib.sha256(b"not the runs").hexdigest()
    assert got in runs["problem"] and data.LAKE_RUNS_SHA256 in runs["problem"]
    assert "CORRUPT" in runs["message"]
    ev = rows["evaluation"]
    assert ev["status"] == "corrupt" and ev["file"] == "images_evaluation.zip"
    assert data.OMNIGLOT_MD5["evaluation"] in ev["problem"]
    assert rows["background"]["status"] == "missing"


def test_check_data_on_the_real_copy(fresh):
    _real("images_background.npz")
    rows = data.check_data()
    by_need = {r["need"]: r for r in rows}
    bg = by_need["background"]
    assert bg["status"] == "verified" and bg["verified"] and bg["present"]
    assert bg["file"] == "images_background.npz" and bg["options"] == []
    assert "ok" in bg["message"]


# ---------------------------------------------------------------- fetch_data


def test_fetch_offline_names_every_file_and_leaves_nothing(tmp_path,
                                                           monkeypatch):
    calls = _offline(monkeypatch)
    root = tmp_path / "data"
    with pytest.raises(data.DataMissingError) as err:
        data.fetch_data(root, progress=False)
    msg = str(err.value)
    for name in ("images_background.zip", "images_evaluation.zip",
                 "all_runs.zip"):
        assert name in msg and data.DATA_FILES[name].url in msg
    assert str(root / "omniglot") in msg and "MLKIT_DATA" in msg
    assert "no network" in msg and len(msg.splitlines()) <= 6
    assert isinstance(err.value, FileNotFoundError)
    assert calls == [data.DATA_FILES["images_background.zip"].url]  # one try
    assert not root.exists()  # no empty folders left behind
    assert _tree(tmp_path) == []


def test_fetch_downloads_what_is_missing(tmp_path, monkeypatch, fresh):
    src = tmp_path / "src"
    src.mkdir()
    _serve(monkeypatch, "images_background.zip",
           _omniglot_zip(src / "bg.zip", [1]))
    _serve(monkeypatch, "images_evaluation.zip",
           _omniglot_zip(src / "ev.zip", [965], "images_evaluation"))
    _serve(monkeypatch, "all_runs.zip", _runs_zip(src / "runs.zip"))
    root = tmp_path / "a" / "b"
    folder = root / "omniglot"
    got = data.fetch_data(root, progress=False)
    assert got == [folder / n for n in ("images_background.zip",
                                        "images_evaluation.zip",
                                        "all_runs.zip")]
    assert (folder / "all_runs.zip").read_bytes() == (
        src / "runs.zip").read_bytes()
    assert sorted(os.listdir(folder)) == sorted(p.name for p in got)
    assert all(r["status"] == "verified" for r in data.check_data(root))
    assert data.fetch_data(root, progress=False) == []  # nothing missing now
    runs = data.load_lake_runs(root=root)  # the served file checks out
    assert len(runs) == 20 and runs[0].query_y[0].item() == 1


def test_fetch_keeps_what_it_got_and_names_what_failed(tmp_path,
                                                       monkeypatch):
    src = _runs_zip(tmp_path / "runs.zip", runs=[1])
    _serve(monkeypatch, "all_runs.zip", src)
    real = data.urllib.request.urlopen

    def urlopen(url, *a, **k):
        if url.startswith("file:"):
            return real(url, *a, **k)
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    root = tmp_path / "root"
    with pytest.raises(data.DataMissingError) as err:
        data.fetch_data(root, progress=False)
    msg = str(err.value)
    assert "images_background.zip" in msg and "images_evaluation.zip" in msg
    assert "404" in msg and "all_runs.zip" not in msg
    assert "images_background.npz" in msg  # the alternative is named
    assert os.listdir(root / "omniglot") == ["all_runs.zip"]


def test_fetch_rejects_a_corrupt_download(tmp_path, monkeypatch):
    _serve(monkeypatch, "all_runs.zip", _runs_zip(tmp_path / "r.zip", [1]),
           md5="0" * 32)
    for name in ("images_background.zip", "images_evaluation.zip"):
        _serve(monkeypatch, name, tmp_path / "r.zip", md5="0" * 32)
    root = tmp_path / "root"
    with pytest.raises(data.DataMissingError, match="md5"):
        data.fetch_data(root, progress=False)
    assert not root.exists()


def test_fetch_never_overwrites_a_corrupt_file(tmp_path, monkeypatch,
                                              fresh):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    (folder / "images_background.npz").write_bytes(b"junk")
    (folder / "images_evaluation.npz").write_bytes(b"junk")
    _serve(monkeypatch, "all_runs.zip", _runs_zip(tmp_path / "r.zip", [1]))
    with pytest.raises(data.DataCorruptError) as err:
        data.fetch_data(tmp_path, progress=False)
    assert "images_background.npz" in str(err.value)
    assert "images_evaluation.npz" in str(err.value)
    assert (folder / "images_background.npz").read_bytes() == b"junk"
    assert (folder / "all_runs.zip").exists()  # the missing one was fetched


@pytest.mark.parametrize("kw,name", [({"progress": "yes"}, "progress"),
                                     ({"root": 3}, "root")])
def test_check_and_fetch_bad_input(kw, name):
    with pytest.raises(ValueError, match=name):
        data.fetch_data(**kw)
    if "root" in kw:
        with pytest.raises(ValueError, match=name):
            data.check_data(**kw)


# ---------------------------------------------------------------- download


def test_download_is_atomic_and_checks_md5(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3000))
    dest = tmp_path / "omniglot" / "a.zip"
    assert data.download_file(src.as_uri(), dest, md5=_md5(src.read_bytes()),
                           progress=False) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert not list(dest.parent.glob("*.part"))
    bad = tmp_path / "new" / "b.zip"
    with pytest.raises(data.DataCorruptError, match="md5"):
        data.download_file(src.as_uri(), bad, md5="0" * 32)
    assert not (tmp_path / "new").exists()  # nor a .part file in it
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    ok = data.download_file(src.as_uri(), tmp_path / "c.bin", sha256=sha)
    assert ok.read_bytes() == src.read_bytes()


def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(urllib.error.URLError):
        data.download_file("https://example.invalid/x.zip",
                        tmp_path / "a" / "b" / "x.zip")
    assert _tree(tmp_path) == []
    (tmp_path / "kept").mkdir()  # a folder that was there stays
    with pytest.raises(urllib.error.URLError):
        data.download_file("https://example.invalid/x.zip",
                        tmp_path / "kept" / "x.zip")
    assert _tree(tmp_path) == ["kept"]


@pytest.mark.parametrize("kw,name", [
    ({"url": None}, "url"), ({"url": ""}, "url"), ({"dest": 3}, "dest"),
    ({"md5": "xyz"}, "md5"), ({"sha256": "0" * 32}, "sha256"),
    ({"timeout": 0}, "timeout"), ({"timeout": float("nan")}, "timeout"),
    ({"progress": None}, "progress"),
])
def test_download_bad_input(tmp_path, kw, name):
    args = {"url": "file:///nonexistent", "dest": tmp_path / "x", **kw}
    with pytest.raises(ValueError, match=name):
        data.download_file(**args)
    assert _tree(tmp_path) == []


# ---------------------------------------------------------------- loaders


@pytest.mark.parametrize("subset", ["background", "evaluation"])
def test_missing_subset_offline_names_files_folder_and_url(
        tmp_path, monkeypatch, subset):
    _offline(monkeypatch)
    with pytest.raises(data.DataMissingError) as err:
        data.load_omniglot(subset, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "omniglot") in msg
    assert f"images_{subset}.npz" in msg and f"images_{subset}.zip" in msg
    assert data.OMNIGLOT_URLS[subset] in msg and "mlkit data fetch" in msg
    assert "MLKIT_DATA" in msg and len(msg.splitlines()) <= 3
    assert isinstance(err.value, FileNotFoundError)  # as callers expect
    assert _tree(tmp_path) == []  # no empty omniglot/ left behind


def test_missing_without_download_does_not_touch_network(tmp_path,
                                                          monkeypatch):
    calls = _offline(monkeypatch)
    with pytest.raises(data.DataMissingError, match="all_runs.zip"):
        data.load_lake_runs(root=tmp_path, download=False)
    with pytest.raises(data.DataMissingError, match="images_evaluation"):
        data.load_omniglot("evaluation", root=tmp_path, download=False)
    with pytest.raises(data.DataMissingError, match="images_evaluation"):
        data.character_images(1000, root=tmp_path, download=False)
    assert calls == [] and _tree(tmp_path) == []


def test_missing_lake_runs_offline(tmp_path, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(data.DataMissingError) as err:
        data.load_lake_runs(root=tmp_path)
    assert data.LAKE_RUNS_URL in str(err.value)
    assert _tree(tmp_path) == []


def test_download_path_fetches_official_archive_and_rejects_corrupt(
        tmp_path, monkeypatch, fresh):
    # Serve a small archive under the "background" URL with its own md5:
    # the loader downloads it, checks it, parses it, then refuses it (964
    # characters expected).
    src = _omniglot_zip(tmp_path / "small.zip", [1, 2])
    _serve(monkeypatch, "images_background.zip", src)
    root = tmp_path / "root"
    with pytest.raises(data.DataCorruptError, match="964"):
        data.load_omniglot("background", root=root)
    archive = root / "omniglot" / "images_background.zip"
    assert archive.read_bytes() == src.read_bytes()
    # The registry's md5 no longer matches: refused before parsing, saying
    # which file, both digests and what to do.
    _serve(monkeypatch, "images_background.zip", src, md5="f" * 32)
    with pytest.raises(data.DataCorruptError) as err:
        data.load_omniglot("background", root=root)
    msg = str(err.value)
    assert str(archive) in msg and "f" * 32 in msg
    assert _md5(src.read_bytes()) in msg and "mlkit data fetch" in msg
    # verify=False skips the checksum; the parser still refuses it.
    with pytest.raises(data.DataCorruptError, match="964"):
        data.load_omniglot("background", root=root, verify=False)


def test_official_zip_is_parsed_once_and_cached_beside_it(
        tmp_path, monkeypatch, fresh):
    monkeypatch.setitem(data._N_CHARS, "evaluation", 2)
    folder = tmp_path / "omniglot"
    folder.mkdir()
    archive = _omniglot_zip(folder / "images_evaluation.zip", [965, 966],
                            "images_evaluation")
    x, ids = data.load_omniglot("evaluation", root=tmp_path, size=None,
                             verify=False)
    assert x.shape == (2, 20, 105, 105) and list(ids) == [965, 966]
    cache = folder / "images_evaluation.parsed.npz"
    assert cache.exists()  # never under the canonical npz name
    assert not (folder / "images_evaluation.npz").exists()
    data._clear_caches()
    monkeypatch.setattr(data, "read_omniglot_zip", None)  # must not be needed
    y, _ = data.load_omniglot("evaluation", root=tmp_path, size=None,
                           verify=False)
    np.testing.assert_array_equal(x, y)
    assert archive.exists()


def test_fake_canonical_npz_refused_unless_verify_false(tmp_path,
                                                        monkeypatch, fresh):
    monkeypatch.setitem(data._N_CHARS, "evaluation", 2)
    folder = tmp_path / "omniglot"
    folder.mkdir()
    npz = folder / "images_evaluation.npz"
    images = np.ones((2, 20, 105, 105), bool)
    images[0, 0, :10] = False
    np.savez_compressed(npz, images=images)
    with pytest.raises(data.DataCorruptError) as err:
        data.load_omniglot("evaluation", root=tmp_path)
    assert str(npz) in str(err.value) and "sha256" in str(err.value)
    assert data.DATA_FILES["images_evaluation.npz"].sha256 in str(err.value)
    x, _ = data.load_omniglot("evaluation", root=tmp_path, size=None,
                           verify=False)
    assert x[0, 0, :10].min() == 1.0 and x[1].max() == 0.0
    # A changed file is read again, not served from the cache.
    images[1, 3] = False
    np.savez_compressed(npz, images=images)
    os.utime(npz, ns=(1, 1))
    y, _ = data.load_omniglot("evaluation", root=tmp_path, size=None,
                           verify=False)
    assert y[1, 3].min() == 1.0
    small = data.character_images(966, root=tmp_path, size=7, verify=False)
    assert small.shape == (20, 7, 7) and small[3].min() == 1.0


@pytest.mark.parametrize("content", [b"junk", b"PK\x03\x04truncated"])
def test_unreadable_npz_is_data_corrupt(tmp_path, fresh, content):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    (folder / "images_evaluation.npz").write_bytes(content)
    with pytest.raises(data.DataCorruptError, match="images_evaluation.npz"):
        data.load_omniglot("evaluation", root=tmp_path, verify=False)


def test_npz_of_wrong_shape_is_data_corrupt(tmp_path, fresh):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    np.savez(folder / "images_evaluation.npz",
             images=np.ones((3, 20, 105, 105), bool))
    with pytest.raises(data.DataCorruptError, match="659"):
        data.load_omniglot("evaluation", root=tmp_path, verify=False)


# ---------------------------------------------------------------- checksums


def test_each_file_is_hashed_once_per_process(tmp_path, monkeypatch, fresh):
    counted: list[str] = []
    real = data._digest

    def digest(path, algorithm):
        counted.append(Path(path).name)
        return real(path, algorithm)

    monkeypatch.setattr(data, "_digest", digest)
    folder = tmp_path / "omniglot"
    folder.mkdir()
    runs = _runs_zip(folder / "all_runs.zip")
    _serve(monkeypatch, "all_runs.zip", runs)
    for _ in range(3):
        data.check_data(tmp_path)
        data.load_lake_runs(root=tmp_path, size=None)
    assert counted == ["all_runs.zip"]
    os.utime(runs, ns=(5, 5))  # a changed file is checked again
    data.load_lake_runs(root=tmp_path, size=None)
    assert counted == ["all_runs.zip"] * 2


def test_real_files_verified_on_first_use(monkeypatch, fresh):
    _real("images_evaluation.npz")
    _real("all_runs.zip")
    counted: list[str] = []
    real = data._digest

    def digest(path, algorithm):
        counted.append(f"{Path(path).name}:{algorithm}")
        return real(path, algorithm)

    monkeypatch.setattr(data, "_digest", digest)
    data.load_omniglot("evaluation")
    data.load_omniglot("evaluation", size=14)
    data.load_lake_runs()
    data.load_lake_runs(size=None)
    assert counted == ["images_evaluation.npz:sha256", "all_runs.zip:sha256"]


# ---------------------------------------------------------------- Lake runs


def test_truncated_lake_runs_is_data_corrupt(tmp_path, fresh):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    good = _runs_zip(tmp_path / "good.zip").read_bytes()
    path = folder / "all_runs.zip"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(data.DataCorruptError) as err:  # checksum first
        data.load_lake_runs(root=tmp_path)
    assert str(path) in str(err.value)
    assert data.LAKE_RUNS_SHA256 in str(err.value)
    with pytest.raises(data.DataCorruptError) as err:  # the parser itself
        data.load_lake_runs(root=tmp_path, verify=False)
    assert str(path) in str(err.value)


def test_lake_runs_without_run20_is_data_corrupt(tmp_path, fresh):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    path = _runs_zip(folder / "all_runs.zip", runs=range(1, 20))
    with pytest.raises(data.DataCorruptError) as err:
        data.load_lake_runs(root=tmp_path, verify=False)
    assert str(path) in str(err.value) and "run20" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_fake_lake_runs_load_with_verify_false(tmp_path, fresh):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    _runs_zip(folder / "all_runs.zip")
    with pytest.raises(data.DataCorruptError, match="sha256"):
        data.load_lake_runs(root=tmp_path)
    runs = data.load_lake_runs(root=tmp_path, verify=False, size=14)
    assert len(runs) == 20 and runs[0].support_x.shape == (20, 1, 14, 14)
    assert runs[0].query_y.tolist() == [j % 20 for j in range(1, 21)]


def test_real_lake_runs_truncated_or_without_run20(tmp_path, fresh):
    src = _real("all_runs.zip")
    folder = tmp_path / "omniglot"
    folder.mkdir()
    content = src.read_bytes()
    (folder / "all_runs.zip").write_bytes(content[:200_000])
    for verify in (True, False):
        with pytest.raises(data.DataCorruptError, match="all_runs.zip"):
            data.load_lake_runs(root=tmp_path, verify=verify)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(
            folder / "all_runs.zip", "w") as zout:
        for info in zin.infolist():
            if not info.filename.startswith("run20/"):
                zout.writestr(info, zin.read(info))
    with pytest.raises(data.DataCorruptError, match="run20"):
        data.load_lake_runs(root=tmp_path, verify=False)


# ---------------------------------------------------------------- zip parser


def test_zip_parser_on_a_small_archive(tmp_path):
    path = _omniglot_zip(tmp_path / "images_background_small9.zip", [5, 3])
    images, ids = data.read_omniglot_zip(path)
    assert list(ids) == [3, 5] and images.shape == (2, 20, 105, 105)
    with zipfile.ZipFile(path) as z:
        raw = z.read("images_background/Alpha/character05/0005_02.png")
    with Image.open(io.BytesIO(raw)) as im:
        expect = np.asarray(im.convert("1"), dtype=bool)
    np.testing.assert_array_equal(images[1, 1], expect)


def test_zip_parser_on_the_official_small_archive():
    path = _real("images_background_small1.zip")
    images, ids = data.read_omniglot_zip(path)  # not a registry file: no check
    assert len(ids) == images.shape[0] > 0


@pytest.mark.parametrize("how", ["truncated", "not a zip", "no images",
                                 "a drawing missing"])
def test_zip_parser_damaged_archives(tmp_path, how):
    path = tmp_path / "x.zip"
    good = _omniglot_zip(tmp_path / "good.zip", [1]).read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "not a zip":
        path.write_bytes(b"hello")
    elif how == "no images":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "nothing")
    else:
        with zipfile.ZipFile(tmp_path / "good.zip") as zin, \
                zipfile.ZipFile(path, "w") as zout:
            for info in zin.infolist()[:-1]:
                zout.writestr(info, zin.read(info))
    with pytest.raises(data.DataCorruptError, match="x.zip"):
        data.read_omniglot_zip(path)


def test_zip_parser_checks_canonical_names(tmp_path, fresh):
    path = _omniglot_zip(tmp_path / "images_background.zip", [1])
    with pytest.raises(data.DataCorruptError, match="md5"):
        data.read_omniglot_zip(path)
    images, ids = data.read_omniglot_zip(path, verify=False)
    assert list(ids) == [1]


def test_zip_parser_bad_input(tmp_path):
    with pytest.raises(data.DataMissingError):
        data.read_omniglot_zip(tmp_path / "none.zip")
    with pytest.raises(ValueError, match="path"):
        data.read_omniglot_zip(None)
    with pytest.raises(ValueError, match="verify"):
        data.read_omniglot_zip(tmp_path / "none.zip", verify="no")


# ------------------------------------------------- the cache of resized images


def _fake_evaluation(tmp_path, monkeypatch, images=None) -> Path:
    monkeypatch.setitem(data._N_CHARS, "evaluation", 2)
    folder = tmp_path / "omniglot"
    folder.mkdir(exist_ok=True)
    if images is None:
        images = np.random.default_rng(0).random((2, 20, 105, 105)) < 0.9
    npz = folder / "images_evaluation.npz"
    np.savez_compressed(npz, images=images)
    return npz


def _cached_files(tmp_path) -> list[Path]:
    return sorted((tmp_path / "mlkit-cache" / "resized").glob("*.npy"))


def test_resized_images_are_cached_and_read_back(tmp_path, monkeypatch,
                                                 fresh):
    _fake_evaluation(tmp_path, monkeypatch)
    x, _ = data.load_omniglot("evaluation", root=tmp_path, size=7,
                              verify=False)
    files = _cached_files(tmp_path)
    assert [f.name.split("-")[:2] for f in files] == [["evaluation", "7px"]]
    data._clear_caches()

    def no_resize(*args, **kw):
        raise AssertionError("resized again instead of read from the cache")

    monkeypatch.setattr(data, "_resize", no_resize)
    y, _ = data.load_omniglot("evaluation", root=tmp_path, size=7,
                              verify=False)
    np.testing.assert_array_equal(x, y)
    assert y.dtype == np.float32 and not y.flags.writeable


def test_full_size_images_are_never_cached(tmp_path, monkeypatch, fresh):
    _fake_evaluation(tmp_path, monkeypatch)
    data.load_omniglot("evaluation", root=tmp_path, size=None, verify=False)
    assert _cached_files(tmp_path) == []


def test_a_changed_source_replaces_its_cached_copy(tmp_path, monkeypatch,
                                                   fresh):
    images = np.ones((2, 20, 105, 105), bool)
    npz = _fake_evaluation(tmp_path, monkeypatch, images)
    x, _ = data.load_omniglot("evaluation", root=tmp_path, size=7,
                              verify=False)
    assert x.max() == 0.0
    first = _cached_files(tmp_path)
    images[1, 3] = False  # all ink
    np.savez_compressed(npz, images=images)
    os.utime(npz, ns=(1, 1))
    data._clear_caches()
    y, _ = data.load_omniglot("evaluation", root=tmp_path, size=7,
                              verify=False)
    assert y[1, 3].min() == 1.0 and y[0].max() == 0.0
    second = _cached_files(tmp_path)
    assert len(second) == 1 and second != first  # the old copy is gone


@pytest.mark.parametrize("damage", ["junk", "wrong shape", "wrong dtype"])
def test_a_damaged_cache_file_is_rebuilt(tmp_path, monkeypatch, fresh,
                                         damage):
    _fake_evaluation(tmp_path, monkeypatch)
    x, _ = data.load_omniglot("evaluation", root=tmp_path, size=7,
                              verify=False)
    (file,) = _cached_files(tmp_path)
    if damage == "junk":
        file.write_bytes(b"\x93NUMPY junk")
    elif damage == "wrong shape":
        np.save(file, np.zeros((1, 20, 7, 7), np.float32))
    else:
        np.save(file, x.astype(np.float64))
    data._clear_caches()
    y, _ = data.load_omniglot("evaluation", root=tmp_path, size=7,
                              verify=False)
    np.testing.assert_array_equal(x, y)
    data._clear_caches()
    monkeypatch.setattr(data, "_resize", None)  # rebuilt: now read back
    z, _ = data.load_omniglot("evaluation", root=tmp_path, size=7,
                              verify=False)
    np.testing.assert_array_equal(x, z)


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch, fresh):
    _fake_evaluation(tmp_path, monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLKIT_CACHE", str(blocker))
    x, _ = data.load_omniglot("evaluation", root=tmp_path, size=7,
                              verify=False)
    assert x.shape == (2, 20, 7, 7)
    assert (data.cache_root() == blocker
            and blocker.read_text() == "not a folder")


def test_cache_root_default_and_env(monkeypatch):
    monkeypatch.delenv("MLKIT_CACHE", raising=False)
    assert data.cache_root() == Path.home() / ".cache" / "mlkit"
    monkeypatch.setenv("MLKIT_CACHE", "~/elsewhere")
    assert data.cache_root() == Path.home() / "elsewhere"
