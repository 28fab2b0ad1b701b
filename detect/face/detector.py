"""Face-forgery detectors: a classifier on aligned face crops, applied to photos and videos.

Training and calibration read a face corpus (``datasets/recipes/faces.toml``): every item is a
crop made by :func:`detect.face.find.crop_face` with the corpus' size and margin, so the network
learns exactly the crops a scan later cuts. At scan time a photo's faces are found, cropped and
scored, and the photo's score is its most suspicious face; a video's sampled frames are scored
the same way (a frame's score is its most suspicious face) and aggregated over time:

- ``mean``: the average over frames with a face;
- ``topk``: the mean of the ``topk`` highest frames (a forgery in a few frames still counts);
- ``stretch``: the highest mean over ``window`` consecutive sampled frames, i.e. attention to
  the most suspicious stretch of the video, which a few isolated noisy frames cannot reach.

Videos are calibrated on their own (``calibrate_video`` on the corpus' clips): an aggregate of
many frames does not have the false-positive rate of one face. Without video calibration the
face threshold is used and the result says so. A photo or video without a face is reported as
"no face found" with verdict ``uncertain`` and leaves the decision to the image detectors.

``FaceDetector`` is all of that for any crop classifier; ``FaceForgeryDetector`` pairs it with
the CNN detector's network (MesoNet-4 or a timm backbone) as the classifier of the crops.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.core.calibration import Calibration
from detect.core.detector import Detector, Tags
from detect.core.errors import ConfigError
from detect.core.types import DetectorResult, Modality
from detect.image.cnn import CNNDetector

if TYPE_CHECKING:
    from detect.io.corpus import Corpus

AGGREGATIONS = ("mean", "topk", "stretch")


def aggregate(frame_scores: np.ndarray, method: str = "topk", topk: int = 4,
              window: int = 4) -> float:
    """One video score from per-frame scores (NaN = no face in that frame, left out)."""
    s = np.asarray(frame_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return math.nan
    if method == "mean":
        return float(s.mean())
    if method == "topk":
        return float(np.sort(s)[::-1][:max(1, topk)].mean())
    if method == "stretch":
        w = max(1, min(window, s.size))
        sums = np.convolve(s, np.ones(w), mode="valid") / w
        return float(sums.max())
    raise ConfigError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {method!r}")


def suspicious_stretch(frame_scores: np.ndarray, window: int = 4) -> tuple[int, int] | None:
    """Positions (first, last) in ``frame_scores`` of the window ``aggregate(..., "stretch")``
    picked: the frames with a face whose mean score is highest."""
    s = np.asarray(frame_scores, dtype=np.float64)
    pos = np.flatnonzero(np.isfinite(s))
    if pos.size == 0:
        return None
    w = max(1, min(window, pos.size))
    means = np.convolve(s[pos], np.ones(w), mode="valid") / w
    k = int(np.argmax(means))
    return int(pos[k]), int(pos[k + w - 1])


def meso4(width: int = 8):  # noqa: ANN201
    """MesoNet-4 (Afchar et al. 2018): four conv blocks and a small dense head. The last
    pooling is adaptive (2x2) so the same network takes 32 px crops as well as 256 px."""
    from torch import nn

    w = width

    def block(cin: int, cout: int, k: int, pool: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(pool))

    return nn.Sequential(
        block(3, w, 3, 2), block(w, w, 5, 2), block(w, 2 * w, 5, 2),
        nn.Conv2d(2 * w, 2 * w, 5, padding=2, bias=False), nn.BatchNorm2d(2 * w),
        nn.ReLU(inplace=True), nn.AdaptiveMaxPool2d(2), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(8 * w, 16), nn.LeakyReLU(0.1), nn.Dropout(0.5),
        nn.Linear(16, 1))


class FaceDetector(Detector):
    """A face-forgery detector: faces found, cropped, scored by a crop classifier, aggregated.

    The crop classifier comes with the subclass, which provides ``_fit_images(crops, labels,
    rng)`` (train on equal-size face crops), ``_score_patches(crops)`` (one score per crop)
    and the network's state in ``_get_state`` / ``_set_state`` (this class adds the face
    facts: grey crops, the video rule). Subclasses set ``size``, ``margin``, ``align``,
    ``finder``, ``aggregate``, ``topk``, ``window``, ``target_fpr``, ``seed`` and an empty
    ``_analyses`` OrderedDict (the per-item cache of ``analyse``).
    """

    tags = Tags(modality=Modality.FACE, needs_fit=True, min_size=20)
    _analyses: OrderedDict[tuple[str, int], dict[str, Any]]

    def applies_to(self, item: Any) -> bool:
        """Photos and videos (they may show a face; one without leaves the verdict to others)."""
        return item.modality in (Modality.IMAGE, Modality.VIDEO)

    def _crops(self, corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
        faces = corpus.header.get("faces")
        if not faces:
            raise ConfigError(f"{self.name}: {corpus.root} is not a face corpus (build one from "
                              "datasets/recipes/faces.toml)")
        if int(faces["size"]) != self.size or not math.isclose(faces["margin"], self.margin):
            raise ConfigError(f"{self.name}: the corpus has {faces['size']} px crops at margin "
                              f"{faces['margin']}; this detector expects {self.size} px at "
                              f"{self.margin}")
        self.grey_ = bool(faces.get("grey", False))
        view = corpus.filter(lambda r: r.modality == Modality.IMAGE)
        return np.stack([it.content for it in view.iter_items()]), view.labels

    def fit(self, corpus: Corpus) -> FaceDetector:
        """Train on the train split's face crops, calibrate on the calib split's crops and,
        when it has clips, the video rule on them."""
        train = corpus.split("train")
        crops, labels = self._crops(train)
        if len(set(labels.tolist())) < 2:
            raise ConfigError(f"{self.name}: the train split needs real and forged faces")
        rng = np.random.default_rng(self.seed)
        self._fit_images(list(crops), labels, rng)
        self._record_training(corpus, n_train=len(labels))
        self.calibrate_on(corpus.split("calib"))
        if any(r.modality == Modality.VIDEO for r in corpus.split("calib").records):
            self.calibrate_video(corpus.split("calib"))
        return self

    def calibrate_on(self, calib: Corpus) -> FaceDetector:
        """The face rule: the crop scores' threshold on the calib split's real faces."""
        crops, labels = self._crops(calib)
        self.calibrate(self.score_crops(crops), labels)
        return self

    def calibrate_video(self, calib: Corpus, sampling: Any = None) -> FaceDetector:
        """The video rule: the aggregate score's threshold on the calib split's real clips.
        Clips without a face anywhere cannot be scored and are left out (and counted)."""
        from detect.io.video import FrameSampling

        videos = calib.filter(lambda r: r.modality == Modality.VIDEO)
        if len(videos) == 0:
            raise ConfigError(f"{self.name}: no video clips in the calib split")
        scores = np.array([self.analyse(it, sampling)["score"] for it in videos.iter_items()])
        return self.set_video_calibration(
            scores, videos.labels, sampling or FrameSampling(n=16),
            {"corpus": calib.header.get("name"),
             "content_hash": calib.header.get("content_hash"), "n_clips": len(videos)})

    def set_video_calibration(self, scores: np.ndarray, labels: np.ndarray, sampling: Any,
                              calibrated_on: dict[str, Any] | None = None
                              ) -> FaceDetector:
        """The video rule from clip scores already computed with ``sampling`` (NaN: a clip
        without a face, left out and counted), e.g. by a resumable benchmark."""
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
        ok = np.isfinite(scores)
        self.video_sampling_ = sampling.describe()
        self.video_calib_scores_ = scores[ok]
        self.video_calib_labels_ = labels[ok].astype(np.int64)
        self.video_calibration_ = Calibration.fit(scores[ok], labels[ok], self.target_fpr)
        self.video_calib_faceless_ = int((~ok).sum())
        self.video_calibrated_on_ = calibrated_on
        self.__dict__.pop("_calibration_cache", None)
        return self

    # -- scoring -------------------------------------------------------------------------------
    def score_crops(self, crops: np.ndarray) -> np.ndarray:
        """Scores of face crops already cut at this detector's size (higher = forged)."""
        import cv2

        if len(crops) == 0:
            return np.empty(0)
        if crops.shape[1:3] != (self.size, self.size):
            crops = np.stack([cv2.resize(c, (self.size, self.size),
                                         interpolation=cv2.INTER_AREA) for c in crops])
        if getattr(self, "grey_", False):  # trained on grey faces: judge grey faces
            from detect.face.find import grey_rgb

            crops = np.stack([grey_rgb(c) for c in crops])
        return self._score_patches(crops).astype(np.float64)

    def _finder(self) -> Any:
        from detect.face.find import FaceFinder

        f = self.__dict__.get("_face_finder")
        if f is None:
            f = self._face_finder = FaceFinder(self.finder)
        return f

    def _faces_in(self, frame: np.ndarray) -> list[dict[str, Any]]:
        from detect.face.find import crop_face

        faces = self._finder().find(frame)
        if not faces:
            return []
        crops = [crop_face(frame, f, self.size, margin=self.margin, align=self.align)
                 for f in faces]
        scores = self.score_crops(np.stack([c.pixels for c in crops]))
        return [{**c.record["face"], "angle": c.record["angle"], "score": float(s)}
                for c, s in zip(crops, scores, strict=True)]

    def analyse(self, item: Any, sampling: Any = None) -> dict[str, Any]:
        """Faces, per-frame scores (videos) and the item's score; cached for ``decide``."""
        key = (item.sha256, id(item.content))
        if key in self._analyses:
            return self._analyses[key]
        if item.modality == Modality.VIDEO:
            from detect.io.video import decoded

            video = decoded(item, sampling=sampling)
            timeline = []
            for idx, t, frame in zip(video.indices, video.times, video.frames, strict=True):
                faces = self._faces_in(frame)
                timeline.append({"index": idx, "time": round(t, 3), "faces": faces,
                                 "score": max((f["score"] for f in faces), default=None)})
            fs = np.array([math.nan if e["score"] is None else e["score"] for e in timeline])
            out = {"timeline": timeline, "sampling": video.meta.get("sampling"),
                   "n_faces": sum(len(e["faces"]) for e in timeline),
                   "score": aggregate(fs, self.aggregate, self.topk, self.window)}
            if self.aggregate == "stretch":
                out["stretch"] = suspicious_stretch(fs, self.window)
        else:
            from detect.image.patch import as_image

            faces = self._faces_in(as_image(item))
            out = {"faces": faces, "n_faces": len(faces),
                   "score": max((f["score"] for f in faces), default=math.nan)}
        self._analyses[key] = out
        while len(self._analyses) > 8:
            self._analyses.popitem(last=False)
        return out

    def score(self, items: list[Any]) -> np.ndarray:
        return np.array([self.analyse(it)["score"] for it in items], dtype=np.float64)

    def score_tiles(self, item: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
        raise ConfigError(f"{self.name} scores faces, not tiles")

    # -- decisions -----------------------------------------------------------------------------
    def video_calibration_for(self, target_fpr: float | None = None) -> Calibration | None:
        cal = getattr(self, "video_calibration_", None)
        if cal is None:
            return None
        return self._rule_at(cal, self.video_calib_scores_, self.video_calib_labels_, target_fpr)

    def decide(self, item: Any, score: float, target_fpr: float | None = None) -> DetectorResult:
        """The result at the face rule (photos) or the video rule (videos), with the faces or
        the per-frame timeline as details; no face: "uncertain", and the detector steps aside
        (``decides`` False) for the image detectors."""
        face_cal = self.calibration_for(target_fpr)  # before any face finding: fitted?
        a = self.analyse(item)
        if item.modality == Modality.VIDEO:
            vcal = self.video_calibration_for(target_fpr)
            cal = vcal or face_cal
            rule = "video" if vcal else "face (this model has no video calibration)"
            res: dict[str, Any] = {
                "aggregate": self.aggregate, "sampling": a["sampling"],
                "frame_threshold": face_cal.threshold,
                # per sampled frame: its faces (box, landmarks, score) and the frame's verdict
                # at the face threshold, the material of the timeline plot
                "frames": [{**e, "verdict": None if e["score"] is None
                            else face_cal.verdict(e["score"])} for e in a["timeline"]],
                "frames_with_face": sum(1 for e in a["timeline"] if e["faces"])}
            if a.get("stretch") is not None:  # the sampled frames the verdict rests on
                res["stretch"] = [a["timeline"][i]["index"] for i in a["stretch"]]
        else:
            cal, rule = face_cal, "face"
            res = {"faces": [{**f, "verdict": face_cal.verdict(f["score"])} for f in a["faces"]]}
        res["n_faces"] = a["n_faces"]
        if a["n_faces"] == 0:
            out = cal.decision(math.nan, rule)
            out.score, out.verdict, out.reason, out.decides = None, "uncertain", \
                "no face found", False
        else:
            out = cal.decision(score, rule)
        out.details.update(res)
        return out

    # -- persistence -----------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors, meta = super()._get_state()
        meta = {**meta, "grey": self.grey_}
        if getattr(self, "video_calibration_", None) is not None:
            tensors["video.calib_scores"] = self.video_calib_scores_
            tensors["video.calib_labels"] = self.video_calib_labels_
            meta = {**meta, "video_calibration": self.video_calibration_.to_dict(),
                    "video_sampling": self.video_sampling_,
                    "video_calib_faceless": self.video_calib_faceless_,
                    "video_calibrated_on": getattr(self, "video_calibrated_on_", None)}
        return tensors, meta

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.grey_ = bool(meta.get("grey", False))
        if "video_calibration" in meta:
            self.video_calib_scores_ = tensors.pop("video.calib_scores")
            self.video_calib_labels_ = tensors.pop("video.calib_labels")
            self.video_calibration_ = Calibration.from_dict(meta["video_calibration"])
            self.video_sampling_ = meta.get("video_sampling")
            self.video_calib_faceless_ = meta.get("video_calib_faceless", 0)
            self.video_calibrated_on_ = meta.get("video_calibrated_on")
        super()._set_state(tensors, meta)


class FaceForgeryDetector(FaceDetector, CNNDetector):
    """``FaceDetector`` with the CNN detector's network on the crops (``arch="meso4"`` or a timm
    architecture), trained here from scratch; ``device`` is where the network runs."""

    def __init__(self, *, arch: str = "meso4", timm_kwargs: dict[str, Any] | None = None,
                 size: int = 32, margin: float = 0.1, align: bool = True,
                 finder: str = "auto", epochs: int = 30, batch_size: int = 64,
                 lr: float = 2e-3, weight_decay: float = 1e-4, blur_prob: float = 0.2,
                 jpeg_prob: float = 0.2, aggregate: str = "stretch", topk: int = 4,
                 window: int = 4, target_fpr: float = 0.01, seed: int = 0,
                 device: str = "cpu"):
        CNNDetector.__init__(self, arch=arch, timm_kwargs=timm_kwargs, patch=size,
                             epochs=epochs, batch_size=batch_size, lr=lr,
                             weight_decay=weight_decay, blur_prob=blur_prob,
                             jpeg_prob=jpeg_prob, target_fpr=target_fpr, seed=seed,
                             device=device)
        if aggregate not in AGGREGATIONS:
            raise ConfigError(f"aggregate must be one of {', '.join(AGGREGATIONS)}, "
                              f"got {aggregate!r}")
        self.size, self.margin, self.align, self.finder = size, margin, align, finder
        self.aggregate, self.topk, self.window = aggregate, topk, window
        self._analyses = OrderedDict()

    def _build(self):  # noqa: ANN202
        if self.arch == "meso4":
            return meso4(**(self.timm_kwargs or {}))
        return super()._build()
