"""Image files as untrusted input: special files, size and pixel caps, downscaling, modes."""

import io
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from hostile_files import call_with_deadline, make_fifo, write_big_png
from PIL import Image

from jaxgan.data import image_files


def encoded(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def tf_decode(data):
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.fixture
def noise():
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_special_files_are_refused_by_kind_without_being_read(tmp_path):
    fifo = make_fifo(tmp_path / "pipe.jpg")
    os.mkdir(tmp_path / "dir.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.jpg"))
    cases = {
        fifo: "not a regular file: a named pipe",
        str(tmp_path / "dir.jpg"): "not a regular file: a directory",
        str(tmp_path / "sock.jpg"): "not a regular file: a socket",
        "/dev/zero": "not a regular file: a character device",
        str(tmp_path / "nope.jpg"): "missing",
        str(tmp_path / "nope" / "a.jpg"): "missing",
    }
    try:
        for path, reason in cases.items():
            with pytest.raises(image_files.BadImage) as error:
                call_with_deadline(lambda p=path: image_files.read_image(p), 20, fifos=[fifo])
            assert str(error.value) == reason, path
    finally:
        server.close()


def test_a_file_over_the_size_cap_is_refused_from_its_size(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:  # sparse: no disk, but stat says 64 MiB + 1 byte
        f.truncate(image_files.MAX_FILE_BYTES + 1)
    with pytest.raises(image_files.BadImage, match=r"^too large: 64.0 MiB, the limit is 64.0 MiB"):
        image_files.read_image(str(path))
    with pytest.raises(image_files.BadFile, match="too large"):
        image_files.read_regular_file(write(tmp_path / "small.txt", b"12345"), 4)
    assert image_files.read_regular_file(str(tmp_path / "small.txt"), 5) == b"12345"


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A valid 13,000 x 13,000 grey PNG of ~1.7 MB: 169 MP, over our cap and under PIL's own
    error threshold (179 MP), so PIL alone would decode it."""
    assert 13_000 * 13_000 > image_files.MAX_PIXELS
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    write_big_png(path, 13_000, 13_000)
    assert os.path.getsize(path) < 2_000_000
    return str(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_is_refused_from_its_header(bomb):
    with pytest.raises(image_files.BadImage, match=r"too many pixels: 13000x13000"):
        image_files.read_image(bomb)


def test_refusing_a_bomb_costs_no_memory(bomb):
    """In a fresh process: the resident size barely moves while the bomb is refused (decoding
    it would take 169 MB at least)."""
    code = (
        "import resource, sys\n"
        "from jaxgan.data import image_files\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    image_files.read_image(sys.argv[1])\n"
        "except image_files.BadImage as e:\n"
        "    print(e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, bomb],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
        check=True,
    )
    reason, grown_mb = result.stdout.strip().splitlines()
    assert reason.startswith("too many pixels") and int(grown_mb) < 40, result.stdout


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_large_image_is_downscaled_once_keeping_its_shorter_side(tmp_path):
    path = tmp_path / "big.png"
    write_big_png(path, 12_000, 12_000)  # the ~150 KB file that decoded to 432 MB per epoch
    stored = image_files.read_image(str(path))
    image = tf_decode(stored)
    assert image.shape == (image_files.STORED_SHORT_SIDE, image_files.STORED_SHORT_SIDE, 3)
    assert len(stored) < 1_000_000


@pytest.mark.parametrize(
    "size, stored",
    [
        ((640, 480), (640, 480)),  # COCO-sized: kept
        ((512, 2048), (512, 2048)),  # at both bounds: kept
        ((4032, 3024), (683, 512)),  # a phone photo: shorter side 512
        ((12_000, 12_000), (512, 512)),
        ((100, 20_000), (72, 14_482)),  # a long strip: at most STORED_MAX_PIXELS
    ],
)
def test_stored_size(size, stored):
    w, h = image_files.stored_size(*size)
    assert (w, h) == stored
    if stored != size:  # downscaled: within both bounds, aspect ratio kept
        assert w * h <= image_files.STORED_MAX_PIXELS
        assert min(w, h) <= image_files.STORED_SHORT_SIDE
        np.testing.assert_allclose(w / h, size[0] / size[1], rtol=0.01)


def test_ordinary_jpeg_and_png_are_stored_byte_for_byte(noise, tmp_path):
    for fmt in ("JPEG", "PNG"):
        for mode in ("RGB", "L"):
            data = encoded(Image.fromarray(noise).convert(mode), fmt)
            assert image_files.read_image(write(tmp_path / f"a.{fmt}", data)) == data


def test_transparency_is_composited_on_white(tmp_path):
    pixels = np.zeros((32, 32, 4), np.uint8)
    pixels[..., 0] = 200  # red everywhere, but the left half fully transparent
    pixels[:, 16:, 3] = 255
    palette = Image.fromarray(pixels[..., :3]).quantize(2)
    palette.info["transparency"] = palette.getpixel((0, 0))  # one colour, made transparent
    cases = {
        "a.png": encoded(Image.fromarray(pixels, "RGBA"), "PNG"),
        "a.webp": encoded(Image.fromarray(pixels, "RGBA"), "WEBP", lossless=True),
        "la.png": encoded(Image.fromarray(pixels[..., [0, 3]], "LA"), "PNG"),
        "p.png": encoded(palette, "PNG", transparency=palette.info["transparency"]),
    }
    for name, data in cases.items():
        image = tf_decode(image_files.read_image(write(tmp_path / name, data)))
        np.testing.assert_allclose(image[:, :12].mean((0, 1)), [255, 255, 255], atol=3)
        if name != "p.png":  # one transparent colour: it is red everywhere, all white
            expected = [200, 200, 200] if name == "la.png" else [200, 0, 0]
            np.testing.assert_allclose(image[:, 20:].mean((0, 1)), expected, atol=4)


def test_sixteen_bit_grey_keeps_its_high_byte(tmp_path):
    """PIL's own conversion clips 16-bit grey at 255 (a white image); ours does not."""
    values = (np.add.outer(np.arange(16), np.arange(20)) * 1500 + 700).astype(np.uint16)
    png = write(tmp_path / "a.png", encoded(Image.fromarray(values), "PNG"))
    tiff = write(tmp_path / "a.tif", encoded(Image.fromarray(values), "TIFF"))
    for path, tolerance in ((png, 0), (tiff, 5)):  # the PNG is stored as it is, TIFF as JPEG
        image = tf_decode(image_files.read_image(path))
        assert image.shape == (16, 20, 3)
        np.testing.assert_allclose(image[..., 0], values >> 8, atol=tolerance)


def test_cmyk_becomes_rgb(tmp_path):
    ramp = np.add.outer(np.arange(20), np.arange(30)).astype(np.uint8) * 5
    cmyk = Image.fromarray(np.dstack([ramp, 255 - ramp, ramp // 2])).convert("CMYK")
    path = write(tmp_path / "a.jpg", encoded(cmyk, "JPEG"))
    image = tf_decode(image_files.read_image(path))
    with Image.open(path) as original:
        assert original.mode == "CMYK"
        reference = np.asarray(original.convert("RGB"), np.float32)
    assert image.shape == (20, 30, 3) and np.abs(image - reference).mean() < 3


def test_formats_that_run_programs_are_not_opened(tmp_path):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto\nshowpage\n"
    with pytest.raises(image_files.BadImage, match="not an image in a known format"):
        image_files.read_image(write(tmp_path / "a.jpg", eps))


def test_corrupt_and_truncated_files_are_unreadable(noise, tmp_path):
    data = encoded(Image.fromarray(noise), "JPEG")
    for name, content in (("cut.jpg", data[: len(data) // 2]), ("junk.jpg", b"\xff\xd8junk")):
        with pytest.raises(image_files.BadImage, match="^unreadable"):
            image_files.read_image(write(tmp_path / name, content))
    with pytest.raises(image_files.BadImage, match="^empty$"):
        image_files.read_image(write(tmp_path / "empty.jpg", b""))


def test_pixel_budget_caps_the_pixels_in_flight():
    budget = image_files._PixelBudget(100)
    in_flight, peak, lock = [0], [0], threading.Lock()

    def work(pixels):
        with budget.reserve(pixels):
            with lock:
                in_flight[0] += min(pixels, 100)
                peak[0] = max(peak[0], in_flight[0])
            threading.Event().wait(0.002)
            with lock:
                in_flight[0] -= min(pixels, 100)

    sizes = np.random.default_rng(0).integers(1, 150, 200)
    threads = [threading.Thread(target=work, args=(int(n),), daemon=True) for n in sizes]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads)  # an image over the budget still proceeds
    assert 50 < peak[0] <= 100


def test_read_images_skips_links_that_lead_outside_the_folder(tmp_path, noise):
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    data = encoded(Image.fromarray(noise), "PNG")
    write(inside / "a.png", data)
    write(outside / "b.png", data)
    os.symlink(outside / "b.png", inside / "link.png")
    os.symlink(outside / "gone.png", inside / "dangling.png")
    log = image_files.BadFileLog("t")
    items = [(n, str(inside / n)) for n in ("a.png", "link.png", "dangling.png")]
    read = dict(image_files.read_images(items, log, inside=os.path.realpath(inside)))
    assert list(read) == ["a.png"]
    assert log.listed == ["link.png (outside in)", "dangling.png (outside in)"]  # alike
    read = dict(image_files.read_images(items, image_files.BadFileLog("t")))
    assert list(read) == ["a.png", "link.png"]  # without `inside`, links are followed
