"""Curves drawn to a PNG with numpy alone: one panel per metric, each on its own scale.

matplotlib and Pillow are not dependencies of forge (matplotlib is only in the `bench` extra),
and a line chart needs neither: the pixels are set with numpy, the text with a 3x5 bitmap font,
and the file is the few PNG chunks `zlib` and `struct` write. The bytes also serve a page that
must embed its images (a data: URI) to render offline.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

WIDTH = 720
PANEL = 150  # the height of one metric's panel
_LEFT, _RIGHT = 88, 16  # room for the value labels; a little air on the right
_TOP, _BOTTOM = 24, 22  # the title above the plot; the step labels below it
_SCALE = 2  # each font pixel is a 2x2 block
_ADVANCE = 4 * _SCALE  # a glyph is 3 pixels wide, then 1 of space
_INK = np.array([40, 40, 40], np.uint8)
_FRAME = np.array([200, 200, 200], np.uint8)
# Tableau's palette, as matplotlib draws its first curves.
_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
           (127, 127, 127), (188, 189, 34), (23, 190, 207)]
# 3x5 glyphs: each digit is one row, top to bottom, its bits the pixels left to right (4 = left).
# Letters are drawn in capitals.
_FONT = {
    "A": "25755", "B": "65656", "C": "34443", "D": "65556", "E": "74647", "F": "74644", "G": "34553", "H": "55755",
    "I": "72227", "J": "11152", "K": "55655", "L": "44447", "M": "57755", "N": "65555", "O": "25552", "P": "65644",
    "Q": "25573", "R": "65655", "S": "34216", "T": "72222", "U": "55557", "V": "55522", "W": "55775", "X": "55255",
    "Y": "55222", "Z": "71247", "0": "75557", "1": "26227", "2": "61247", "3": "61216", "4": "55711", "5": "74616",
    "6": "34757", "7": "71222", "8": "75757", "9": "75716", ".": "00002", ",": "00024", "-": "00700", "_": "00007",
    "/": "11244", ":": "02020", "=": "07070", "(": "24442", ")": "21112", "[": "64446", "]": "31113", "+": "02720",
    "%": "41241", "?": "61202", " ": "00000",
}

Curve = Sequence[tuple[int, float]]


def render(curves: Mapping[str, Curve]) -> bytes:
    """The PNG of `curves` (name -> (step, value) points), one panel each, in the given order."""
    img = np.full((PANEL * max(len(curves), 1), WIDTH, 3), 255, np.uint8)
    for i, (name, curve) in enumerate(curves.items()):
        last = f"{curve[-1][1]:.4g}" if curve else "-"
        _panel(img, i * PANEL, f"{name}   last {last}", [curve], first_colour=i)
    return encode(img)


def overlay(name: str, curves: Sequence[Curve]) -> bytes:
    """One panel of `name` with several runs' curves on one scale, in the palette's order (the
    page that shows it names the runs in the same colours)."""
    img = np.full((PANEL, WIDTH, 3), 255, np.uint8)
    _panel(img, 0, name, curves)
    return encode(img)


def color(i: int) -> str:
    return "#%02x%02x%02x" % _COLORS[i % len(_COLORS)]


def encode(img: np.ndarray) -> bytes:
    """An 8-bit RGB image (height, width, 3) as PNG bytes: every row unfiltered, one IDAT chunk."""
    height, width, _ = img.shape
    rows = np.zeros((height, 1 + width * 3), np.uint8)  # a leading 0 per row: filter type None
    rows[:, 1:] = img.reshape(height, width * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + chunk(b"IEND", b"")


def plot_box(top: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels of the plot area of the panel starting at row `top`."""
    return _LEFT, top + _TOP, WIDTH - _RIGHT, top + PANEL - _BOTTOM


def _panel(img: np.ndarray, top: int, title: str, curves: Sequence[Curve], first_colour: int = 0) -> None:
    """A framed plot of `curves` on one shared scale, coloured in the palette's order from
    `first_colour`; non-finite points are left out."""
    left, y0, right, y1 = plot_box(top)
    img[y0, left:right + 1] = img[y1, left:right + 1] = _FRAME
    img[y0:y1 + 1, left] = img[y0:y1 + 1, right] = _FRAME
    _text(img, left, top + 6, title, _INK)
    points = [[(s, v) for s, v in c if math.isfinite(v)] for c in curves]
    every = [p for c in points for p in c]
    if not every:
        return
    lo, hi = min(v for _, v in every), max(v for _, v in every)
    first, last = min(s for s, _ in every), max(s for s, _ in every)
    for i, c in enumerate(points, start=first_colour):
        if c:
            xs = _scale(np.array([s for s, _ in c], float), first, last, left + 2, right - 2)
            ys = _scale(np.array([v for _, v in c], float), lo, hi, y1 - 2, y0 + 2)
            _polyline(img, xs, ys, np.array(_COLORS[i % len(_COLORS)], np.uint8))
    if hi == lo:  # a flat curve: one label, beside its line
        _text(img, left - 6, (y0 + y1) // 2 - 5 * _SCALE // 2, f"{hi:.4g}", _INK, align_right=True)
    else:
        _text(img, left - 6, y0, f"{hi:.4g}", _INK, align_right=True)
        _text(img, left - 6, y1 - 5 * _SCALE, f"{lo:.4g}", _INK, align_right=True)
    _text(img, left, y1 + 6, str(first), _INK)
    _text(img, right, y1 + 6, str(last), _INK, align_right=True)


def _scale(v: np.ndarray, lo: float, hi: float, start: int, end: int) -> np.ndarray:
    """Map [lo, hi] onto pixels [start, end] (either way round); a flat range sits in the middle."""
    if hi == lo:
        return np.full(v.shape, (start + end) / 2)
    return start + (v - lo) / (hi - lo) * (end - start)


def _polyline(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: np.ndarray) -> None:
    """Segments between consecutive points, two pixels thick; a single point is a dot."""
    px, py = [np.rint(xs[:1])], [np.rint(ys[:1])]
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:]):
        t = np.linspace(0.0, 1.0, int(max(abs(x1 - x0), abs(y1 - y0))) + 2)
        px.append(np.rint(x0 + t * (x1 - x0)))
        py.append(np.rint(y0 + t * (y1 - y0)))
    x, y = np.concatenate(px).astype(int), np.concatenate(py).astype(int)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        img[y + dy, x + dx] = color


def _text(img: np.ndarray, x: int, y: int, text: str, color: np.ndarray, align_right: bool = False) -> None:
    if align_right:
        x -= len(text) * _ADVANCE - _SCALE
    for ch in text.upper():
        for r, digit in enumerate(_FONT.get(ch, _FONT["?"])):
            for c in range(3):
                if int(digit) & (4 >> c) and 0 <= x + c * _SCALE and x + (c + 1) * _SCALE <= img.shape[1]:
                    img[y + r * _SCALE:y + (r + 1) * _SCALE, x + c * _SCALE:x + (c + 1) * _SCALE] = color
        x += _ADVANCE
