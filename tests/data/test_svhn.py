"""SVHN format 1 under the paper's protocol, on a tiny digitStruct.mat written like MATLAB v7.3."""

from __future__ import annotations

import numpy as np
import pytest

from mistnet.data.store import SceneFolder
from mistnet.data.svhn import load_svhn, read_digit_struct
from mistnet.errors import DataError

h5py = pytest.importorskip("h5py")
Image = pytest.importorskip("PIL.Image")


def write_digit_struct(path, pictures):
    """pictures: list of (name, [dict(left, top, width, height, label), ...])."""
    ref_dtype = h5py.special_dtype(ref=h5py.Reference)
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        g = f.create_group("digitStruct")
        names = g.create_dataset("name", (len(pictures), 1), dtype=ref_dtype)
        bboxes = g.create_dataset("bbox", (len(pictures), 1), dtype=ref_dtype)
        counter = iter(range(10**6))
        for i, (name, boxes) in enumerate(pictures):
            chars = refs.create_dataset(
                f"n{next(counter)}", data=np.array([[ord(c)] for c in name], dtype=np.uint16)
            )
            names[i, 0] = chars.ref
            grp = refs.create_group(f"b{next(counter)}")
            for field in ("height", "label", "left", "top", "width"):
                values = [float(b[field]) for b in boxes]
                if len(values) == 1:
                    grp.create_dataset(field, data=np.array([[values[0]]]))
                else:
                    col = grp.create_dataset(field, (len(values), 1), dtype=ref_dtype)
                    for j, v in enumerate(values):
                        col[j, 0] = refs.create_dataset(
                            f"v{next(counter)}", data=np.array([[v]])
                        ).ref
            bboxes[i, 0] = grp.ref


def _box(left, top, width, height, label):
    return dict(left=left, top=top, width=width, height=height, label=label)


def _picture(d, name, size, rng):
    w, h = size
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / name)


@pytest.fixture(scope="module")
def svhn_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("svhn")
    rng = np.random.default_rng(0)
    train, test = root / "train", root / "test"
    train.mkdir()
    test.mkdir()
    pics = []
    for i in range(40):  # 2-digit pictures, 100x50
        _picture(train, f"{i + 1}.png", (100, 50), rng)
        pics.append(
            (
                f"{i + 1}.png",
                [_box(10 + i % 5, 5, 20, 30, 10 if i == 0 else 1 + i % 9), _box(40, 8, 22, 35, 3)],
            )
        )
    _picture(train, "41.png", (60, 40), rng)
    pics.append(("41.png", [_box(3, 3, 10, 20, 5)]))  # one digit: dropped
    _picture(train, "42.png", (90, 40), rng)
    pics.append(("42.png", [_box(3, 3, 10, 20, 5), _box(20, 3, 10, 20, 6), _box(40, 3, 10, 20, 7)]))
    write_digit_struct(train / "digitStruct.mat", pics)
    pics = []
    # test: 100x50 images, sy = 60/50 = 1.2; heights 30 -> 36 px kept, 24 -> 28.8 px dropped,
    # 25 -> exactly 30 px kept (the rule drops boxes under 30 px)
    for i, (h1, h2) in enumerate([(30, 30), (24, 30), (30, 24), (25, 25), (40, 30)]):
        _picture(test, f"{i + 1}.png", (100, 50), rng)
        pics.append((f"{i + 1}.png", [_box(5, 5, 20, h1, 10), _box(50, 5, 20, h2, 2)]))
    write_digit_struct(test / "digitStruct.mat", pics)
    return root


def test_read_digit_struct_scalar_and_reference_fields(svhn_root):
    recs = read_digit_struct(svhn_root / "train" / "digitStruct.mat")
    assert len(recs) == 42 and recs[0].name == "1.png"
    assert recs[40].label.tolist() == [5.0] and recs[41].label.tolist() == [5.0, 6.0, 7.0]
    np.testing.assert_array_equal(recs[0].left, [10, 40])
    np.testing.assert_array_equal(recs[0].label, [10, 3])


def test_svhn_protocol(svhn_root):
    data = load_svhn(svhn_root, seed=0, progress=False)
    tr, va, te = data["train"], data["val"], data["test"]
    # 2-digit images only, 5% validation hold-out, disjoint and complete
    assert len(va["names"]) == 2 and len(tr["names"]) == 38
    assert set(tr["names"]).isdisjoint(va["names"])
    assert set(tr["names"]) | set(va["names"]) == {f"{i}.png" for i in range(1, 41)}
    assert tr["images"].shape == (38, 3, 60, 240) and tr["images"].dtype == np.uint8
    assert tr["boxes"].shape == (38, 2, 4) and np.all(tr["counts"] == 2)
    # test filter in the resized frame: drop 2.png and 3.png
    assert te["names"] == ["1.png", "4.png", "5.png"]
    np.testing.assert_array_equal(te["labels"], [[0, 2]] * 3)  # label 10 -> 0
    sx, sy = 240 / 100, 60 / 50
    np.testing.assert_allclose(
        te["boxes"][0],
        [
            [(5 + 10) * sx - 0.5, (5 + 15) * sy - 0.5, 20 * sx, 30 * sy],
            [(50 + 10) * sx - 0.5, (5 + 15) * sy - 0.5, 20 * sx, 30 * sy],
        ],
        rtol=1e-6,
    )
    with Image.open(svhn_root / "test" / "5.png") as im:
        ref = np.asarray(im.convert("RGB").resize((240, 60), Image.BILINEAR))
    np.testing.assert_array_equal(te["images"][2], ref.transpose(2, 0, 1))
    first = tr if "1.png" in tr["names"] else va
    assert first["labels"][first["names"].index("1.png"), 0] == 0
    # the hold-out is seeded
    again = load_svhn(svhn_root, seed=0, progress=False)
    assert again["val"]["names"] == va["names"]
    other = load_svhn(svhn_root, seed=1, progress=False)
    assert other["val"]["names"] != va["names"]


def test_svhn_errors(tmp_path, svhn_root):
    with pytest.raises(DataError, match="missing SVHN folder"):
        load_svhn(tmp_path)
    bad = tmp_path / "digitStruct.mat"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="digitStruct.mat: not a valid SVHN"):
        read_digit_struct(bad)


@pytest.mark.parametrize(
    "box, message",
    [
        (_box(3, 3, 10, 20, 3.7), "label 3.7 is no digit label"),
        (_box(3, 3, 10, 20, 42), "label 42 is no digit label"),
        (_box(3, 3, 10, 20, 0), "label 0 is no digit label"),
        (_box(3, 3, 10, 20, np.nan), "label nan is no digit label"),
        (_box(np.nan, 3, 10, 20, 4), "left nan is not finite"),
        (_box(3, 3, np.inf, 20, 4), "width inf is not finite"),
        (_box(3, 3, 10, -20, 4), "height -20 is not > 0"),
        (_box(3, 3, 1e39, 20, 4), "its resized box holds 2 values beyond float32's range"),
        # Before: named the output's train.npz / manifest.json, where no box is given
        (_box(5000, 3, 10, 20, 4), "box 1 lies wholly outside the picture"),
        (_box(3, 3, 1e-46, 1e-46, 4), "box 1 is of side 0 once resized (w 0, h 0)"),
    ],
)
def test_bad_values_are_refused_naming_the_mat_file_and_picture(capsys, tmp_path, box, message):
    from cli_helpers import assert_user_error, files_under, mist

    root = tmp_path / "svhn"
    for sub in ("train", "test"):
        (root / sub).mkdir(parents=True)
        _picture(root / sub, "1.png", (100, 50), np.random.default_rng(0))
        write_digit_struct(
            root / sub / "digitStruct.mat", [("1.png", [_box(40, 8, 22, 35, 3), box])]
        )
    before = files_under(tmp_path)
    result = mist(capsys, "data", "make", "svhn", "--svhn", root, "--out", tmp_path / "s")
    mat = root / "train" / "digitStruct.mat"
    assert_user_error(result, f"{mat}: picture '1.png': {message}")
    assert files_under(tmp_path) == before


def test_a_folder_that_makes_an_empty_split_or_lists_a_picture_twice_is_refused(capsys, tmp_path):
    """Before: written with exit 0: "svhn train 9, val 1, test 0" (every test picture's boxes
    under 30 px), a train split of one picture with no val split, a picture listed six times
    in train and val at once; a 16-bit picture clipped at 255."""
    from cli_helpers import assert_user_error, files_under, mist

    rng = np.random.default_rng(0)
    two = [_box(5, 5, 20, 30, 1), _box(50, 5, 20, 30, 2)]
    cases = {
        "test 0": ({"train": ["1.png", "2.png"], "test": ["1.png"]}, [_box(5, 5, 20, 10, 1)] * 2),
        "train 1": ({"train": ["1.png"], "test": ["1.png"]}, two),
        "twice": ({"train": ["1.png", "1.png"], "test": ["1.png"]}, two),
        "16-bit": ({"train": ["1.png", "2.png"], "test": ["1.png"]}, two),
    }
    said = {
        "test 0": "test: 0 picture(s) of two digits with both boxes 30 px tall once resized; "
        "SVHN's test split needs at least 1",
        "train 1": "train: 1 picture(s) of two digits; SVHN's train and val splits need at least 2",
        "twice": "train/digitStruct.mat: picture '1.png' is listed twice (as '1.png')",
        "16-bit": "train/2.png: a I;16 picture; SVHN's pictures are 8-bit colour",
    }
    for case, (names, boxes) in cases.items():
        root = tmp_path / case
        for sub, listed in names.items():
            (root / sub).mkdir(parents=True)
            for name in sorted(set(listed)):
                _picture(root / sub, name, (100, 50), rng)
            pictures = [(n, two if sub == "train" else boxes) for n in listed]
            write_digit_struct(root / sub / "digitStruct.mat", pictures)
        if case == "16-bit":
            Image.fromarray(np.full((50, 100), 60000, np.uint16)).save(root / "train" / "2.png")
        before = files_under(tmp_path)
        result = mist(capsys, "data", "make", "svhn", "--svhn", root, "--out", tmp_path / "s")
        assert_user_error(result, said[case])
        assert files_under(tmp_path) == before


def test_make_svhn_cli(svhn_root, tmp_path):
    from mistnet.cli import main

    assert (
        main(["data", "make", "svhn", "--svhn", str(svhn_root), "--out", str(tmp_path / "s")]) == 0
    )
    ds = SceneFolder(tmp_path / "s", "test")
    assert (ds.channels, ds.height, ds.width, ds.max_count, len(ds)) == (3, 60, 240, 2, 3)
    assert ds.manifest["file_names"]["test"] == ["1.png", "4.png", "5.png"]


def test_make_svhn_refuses_the_generators_options(capsys, svhn_root, tmp_path):
    """Before: `data make svhn --svhn ROOT --n-train 1 --n-val 1 --n-test 1 --digits mnist
    --layout-bank 7` wrote all of ROOT's pictures (train 38, val 2, test 5) with rc 0."""
    from mistnet.cli import main

    argv = ["data", "make", "svhn", "--svhn", str(svhn_root), "--out", str(tmp_path / "s")]
    for option, value in (("--n-train", "1"), ("--digits", "mnist"), ("--layout-bank", "7")):
        assert main([*argv, option, value]) == 2
        assert f"{option} only applies to" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(argv) == 0
