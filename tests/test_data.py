import gzip

import numpy as np
import pytest
import torch

from edgekd.data import Augment, DataSpec, load_data, make_loader
from edgekd.data.idx import FILES, find_fashion_mnist, read_idx
from edgekd.errors import DataError


def test_fashion_mnist_is_read_whole(fashion):
    assert len(fashion.train) == 60000 and len(fashion.val) == 10000
    images, labels = fashion.train[0]
    assert images.shape == (1, 28, 28) and images.dtype == torch.uint8
    assert set(fashion.val.labels.tolist()) == set(range(10))
    assert torch.bincount(fashion.val.labels).tolist() == [1000] * 10


def test_subsets_are_fixed_and_sized(fashion):
    a = load_data(DataSpec(train_subset=500, val_subset=200))
    b = load_data(DataSpec(train_subset=500, val_subset=200))
    assert (len(a.train), len(a.selection), len(a.report)) == (450, 50, 200)  # selection: 10% of train_subset
    assert torch.equal(a.train.labels, b.train.labels) and torch.equal(a.selection.labels, b.selection.labels)


def test_loader_normalizes_with_recorded_statistics(fashion):
    loader = make_loader(fashion.val, fashion.info, batch_size=1000, train=False)
    images, labels = next(iter(loader))
    expected = (fashion.val.images[:1000].float() / 255 - 0.2860) / 0.3530
    assert torch.allclose(images, expected, atol=1e-6)
    assert torch.equal(labels, fashion.val.labels[:1000])


def test_augmentation_crops_and_flips_but_keeps_shape(fashion):
    loader = make_loader(fashion.val, fashion.info, batch_size=256, train=True, augment=Augment(2, True), seed=1)
    images, labels = next(iter(loader))
    assert images.shape == (256, 1, 28, 28)
    plain = (fashion.val.images.float() / 255 - 0.2860) / 0.3530
    same = sum(any(torch.equal(img, plain[i]) for i in range(len(plain)) if fashion.val.labels[i] == lab)
               for img, lab in zip(images[:16], labels[:16]))
    assert same < 16  # some images moved


def fake_folder(tmp_path, **overrides):
    folder = tmp_path / "fm"
    folder.mkdir()
    source = find_fashion_mnist()
    for name in [n for pair in FILES.values() for n in pair]:
        (folder / name).write_bytes(overrides.get(name, (source / name).read_bytes()))
    return folder


def test_explicit_folder_and_env_var_are_searched(tmp_path, monkeypatch):
    folder = fake_folder(tmp_path)
    assert find_fashion_mnist(folder) == folder
    monkeypatch.setenv("EDGEKD_DATA", str(folder))
    assert find_fashion_mnist() == folder


def test_missing_file_names_it_and_the_fix(tmp_path):
    folder = fake_folder(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*apt-get install -y dataset-fashion-mnist"):
        load_data(DataSpec(source=str(folder)))


def test_truncated_gzip_is_reported(tmp_path):
    good = (find_fashion_mnist() / "t10k-images-idx3-ubyte.gz").read_bytes()
    folder = fake_folder(tmp_path, **{"t10k-images-idx3-ubyte.gz": good[: len(good) // 2]})
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is truncated"):
        load_data(DataSpec(source=str(folder)))


def test_short_payload_is_reported(tmp_path):
    raw = gzip.decompress((find_fashion_mnist() / "t10k-images-idx3-ubyte.gz").read_bytes())
    folder = fake_folder(tmp_path, **{"t10k-images-idx3-ubyte.gz": gzip.compress(raw[:-100])})
    with pytest.raises(DataError, match="header promises 7840000 bytes"):
        load_data(DataSpec(source=str(folder)))


def test_bad_header_is_reported(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + b"\x00" * 20))
    with pytest.raises(DataError, match="bad header"):
        read_idx(path, expected_ndim=3)


def write_png(path, value, size=(12, 10)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)


def test_imagefolder_loads_classes_resized(tmp_path):
    for split, n in (("train", 4), ("val", 2)):
        for cls, value in (("cat", 20), ("dog", 200)):
            for i in range(n):
                write_png(tmp_path / split / cls / f"{i}.png", value)
    bundle = load_data(DataSpec(source=str(tmp_path), image_size=(8, 8)))
    assert bundle.info.classes == ("cat", "dog") and bundle.info.channels == 3
    assert bundle.train.images.shape == (7, 3, 8, 8) and bundle.selection.images.shape == (1, 3, 8, 8)
    assert bundle.report.unsealed().labels.tolist() == [0, 0, 1, 1]
    assert int(bundle.report.unsealed().images[3].float().mean()) == 200


def test_empty_imagefolder_is_an_error(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_data(DataSpec(source=str(tmp_path)))


def test_unreadable_image_is_named(tmp_path):
    write_png(tmp_path / "train" / "cat" / "0.png", 1)
    write_png(tmp_path / "val" / "cat" / "0.png", 1)
    (tmp_path / "train" / "cat" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="1.png"):
        load_data(DataSpec(source=str(tmp_path)))


def test_factory_data(fashion):
    bundle = load_data(DataSpec(source="user_code:random_data"))
    assert bundle.info.num_classes == 4 and bundle.info.image_size == (16, 16)
    images, labels = next(iter(make_loader(bundle.report.unsealed(), bundle.info, batch_size=8, train=False)))
    assert images.dtype == torch.float32 and images.shape == (8, 1, 16, 16)


def test_unknown_source_is_explained():
    with pytest.raises(DataError, match="neither 'fashion-mnist'"):
        load_data(DataSpec(source="/no/such/folder"))


def test_three_splits_hold_out_selection_and_seal_the_report_split(fashion):
    bundle = load_data(DataSpec(train_subset=1000, val_subset=300, selection=200))
    assert (len(bundle.train), len(bundle.selection), len(bundle.report)) == (800, 200, 300)
    kept = {tuple(x.flatten()[::7].tolist()) for x in bundle.train.images}
    assert not any(tuple(x.flatten()[::7].tolist()) in kept for x in bundle.selection.images)  # disjoint
    with pytest.raises(DataError, match="report split was read while choices were still being made"):
        next(iter(make_loader(bundle.report, bundle.info, batch_size=8, train=False)))
    assert "held out of fashion-mnist train (seed 0)" in bundle.splits["selection"]
    assert "t10k" in bundle.splits["report"]
    with pytest.raises(DataError, match="too few to hold out"):
        load_data(DataSpec(train_subset=100, selection=80))


def test_with_a_test_set_val_selects_and_test_reports(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for cls, value in (("cat", 20), ("dog", 200)):
            for i in range(n):
                write_png(tmp_path / split / cls / f"{i}.png", value)
    bundle = load_data(DataSpec(source=str(tmp_path), image_size=(8, 8)))
    assert (len(bundle.train), len(bundle.selection), len(bundle.report)) == (8, 4, 6)  # nothing held out of train
    assert bundle.splits["selection"].endswith("val (4 items)") and bundle.splits["report"].endswith("test (6 items)")
