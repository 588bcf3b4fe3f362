"""decompress(compress(x)) must equal the model's own hard-quantized reconstruction, for every size
and colour mode the codec accepts."""

import io

import numpy as np
import pytest
from PIL import Image

from texpress.errors import InputError

from .conftest import crop, pixels


def test_exact_round_trip_on_every_sample_photo(codec, photos):
    for path in photos:
        data = codec.compress(path)
        restored = codec.decompress(data)
        expected = codec.reconstruct(path)
        assert restored.size == Image.open(path).size
        assert np.array_equal(pixels(restored), pixels(expected)), path.name


@pytest.mark.parametrize("size", [(1, 1), (63, 65), (130, 47), (64, 64)])
def test_any_size_is_padded_and_cropped_back(codec, photos, size):
    im = crop(photos[0], *size)
    restored = codec.decompress(codec.compress(im))
    assert restored.size == size
    assert np.array_equal(pixels(restored), pixels(codec.reconstruct(im)))


def test_grayscale_is_restored_as_grayscale(codec, photos):
    gray = [p for p in photos if Image.open(p).mode == "L"][0]
    restored = codec.decompress(codec.compress(gray))
    assert restored.mode == "L"
    assert np.array_equal(pixels(restored), pixels(codec.reconstruct(gray)))


def test_alpha_is_kept_losslessly(codec, photos):
    rgba = crop(photos[0], 96, 80, "RGBA")
    alpha = np.random.default_rng(0).integers(0, 256, (80, 96), dtype=np.uint8)
    rgba.putalpha(Image.fromarray(alpha))
    restored = codec.decompress(codec.compress(rgba))
    assert restored.mode == "RGBA"
    assert np.array_equal(np.asarray(restored.getchannel("A")), alpha)

    la = crop(photos[0], 50, 40, "LA")
    assert codec.decompress(codec.compress(la)).mode == "LA"


def test_palette_and_cmyk_become_rgb(codec, photos):
    base = crop(photos[1], 100, 70)
    for im in (base.convert("P"), base.convert("CMYK"), base.convert("1")):
        restored = codec.decompress(codec.compress(im))
        assert restored.size == (100, 70)
        assert restored.mode in ("RGB", "L")
    paletted = base.convert("P")
    paletted.info["transparency"] = 0
    assert codec.decompress(codec.compress(paletted)).mode == "RGBA"


def test_16_bit_input_is_reduced_with_a_warning(codec, tmp_path):
    arr = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    loaded = codec.load(path)
    assert any("8 bits" in w for w in loaded.warnings)
    assert loaded.mode == "L"
    assert codec.decompress(codec.compress(path)).size == (64, 48)


def test_exif_orientation_is_applied(codec, photos, tmp_path):
    im = crop(photos[0], 120, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif)
    assert codec.decompress(codec.compress(path)).size == (60, 120)


def test_pixel_limit_refuses_large_images(lite_ckpt, photos):
    from texpress.codec.api import Codec

    small = Codec.from_checkpoint(lite_ckpt, max_pixels=10_000)
    with pytest.raises(InputError, match="above the limit"):
        small.compress(photos[0])


def test_arrays_and_bytes_are_accepted(codec, photos):
    arr = pixels(crop(photos[0], 70, 50))
    assert codec.decompress(codec.compress(arr)).size == (70, 50)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    assert codec.compress(buf.getvalue()) == codec.compress(arr)
