import cv2
import numpy as np
import pytest
import torch

from fusion.errors import RgbtError
from fusion.io import Norm16, read_image, rgb_to_grey, to_uint, write_png


def test_read_colour_is_rgb_float(tmp_path):
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    cv2.imwrite(str(tmp_path / "r.png"), bgr)
    x, info = read_image(tmp_path / "r.png")
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert torch.equal(x[0, 0], torch.ones(5, 7)) and x[0, 1:].abs().max() == 0
    assert info.bit_depth == 8 and info.channels == 3 and info.normalization == "uint8/255"


def test_three_equal_channels_become_one(tmp_path):
    g = np.arange(35, dtype=np.uint8).reshape(5, 7)
    cv2.imwrite(str(tmp_path / "g.png"), np.stack([g, g, g], 2))
    x, _ = read_image(tmp_path / "g.png")
    assert x.shape == (1, 1, 5, 7)
    assert torch.allclose(x[0, 0] * 255, torch.from_numpy(g).float())


def test_grey_flag_uses_bt601(tmp_path):
    cv2.imwrite(str(tmp_path / "c.png"), np.dstack([np.full((2, 2), v, np.uint8) for v in (10, 100, 200)]))
    x, _ = read_image(tmp_path / "c.png", grey=True)
    # BGR (10, 100, 200) is RGB (200, 100, 10)
    assert x.shape == (1, 1, 2, 2)
    assert x[0, 0, 0, 0].item() * 255 == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 10, abs=1e-3)


def test_16bit_needs_explicit_normalisation(tmp_path):
    a = np.array([[1000, 2000], [3000, 5000]], np.uint16)
    cv2.imwrite(str(tmp_path / "t.png"), a)
    with pytest.raises(RgbtError, match="16-bit.*--norm16"):
        read_image(tmp_path / "t.png")
    x, info = read_image(tmp_path / "t.png", norm16=Norm16.parse("minmax"))
    assert torch.allclose(x.flatten(), torch.tensor([0.0, 0.25, 0.5, 1.0]))
    assert info.bit_depth == 16 and info.normalization == "minmax [1000, 5000]"
    x, _ = read_image(tmp_path / "t.png", norm16=Norm16.parse("fixed"))
    assert x.flatten()[3].item() == pytest.approx(5000 / 65535)
    x, info = read_image(tmp_path / "t.png", norm16=Norm16.parse("fixed:1000:3000"))
    assert torch.allclose(x.flatten(), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    x, info = read_image(tmp_path / "t.png", norm16=Norm16.parse("percentile:0:100"))
    assert torch.allclose(x.flatten(), torch.tensor([0.0, 0.25, 0.5, 1.0]))
    assert info.normalization.startswith("percentile:0:100")


@pytest.mark.parametrize("text", ["bogus", "fixed:3", "fixed:5:1", "minmax:1:2", "percentile:a:b"])
def test_bad_norm16_specs(text):
    with pytest.raises(RgbtError):
        Norm16.parse(text)


def test_write_png_round_trip_8_and_16_bit(tmp_path):
    x = torch.rand(1, 3, 9, 11)
    write_png(tmp_path / "a.png", x)
    y, _ = read_image(tmp_path / "a.png")
    assert (y - x).abs().max() <= 0.5 / 255 + 1e-6
    write_png(tmp_path / "b.png", x[:, :1], bits=16)
    assert cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    y, _ = read_image(tmp_path / "b.png", norm16=Norm16())
    assert (y - x[:, :1]).abs().max() <= 0.5 / 65535 + 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temp files left


def test_write_png_refuses_nan_and_leaves_nothing(tmp_path):
    x = torch.rand(1, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "n.png", x)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "missing"])
def test_corrupt_files_give_one_line_error(tmp_path, damage):
    p = tmp_path / "x.jpg"
    cv2.imwrite(str(p), (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    data = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        p.write_bytes(b"")
    elif damage == "garbage":
        p.write_bytes(b"not an image at all")
    else:
        p.unlink()
    with pytest.raises(RgbtError, match="x.jpg") as e:
        read_image(p)
    assert "\n" not in str(e.value)


def test_to_uint_and_grey():
    assert to_uint(torch.tensor([[[0.0, 0.5, 1.0]]])).tolist() == [[0, 128, 255]]
    rgb = torch.rand(2, 3, 4, 4)
    assert torch.allclose(rgb_to_grey(rgb), 0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:])


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from fusion.io import atomic_write_bytes

    atomic_write_bytes(tmp_path / "out.bin", b"data")
    mode = stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH  # readable by others, as files written normally are
