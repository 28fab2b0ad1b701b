"""Inference of the wild line's EfficientNet members: batch norms folded into their convolutions,
and the frozen first blocks computed once for the probe and the fine-tuned encoder."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from detect.core.device import module_tensors
from detect.core.models import load_model
from detect.image import foundation
from detect.io.media import load

HOLDOUT = Path(__file__).parent / "data" / "shipped-holdout-wild"


@pytest.fixture(scope="module")
def views() -> list[np.ndarray]:
    files = sorted(p for p in HOLDOUT.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    return [load(p, modalities=("image",)).content for p in files[:6]]


def test_folded_batch_norms_compute_the_same_features():
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(foundation.backbone_weights(), weights_only=True))
    net.eval()
    folded = foundation.fold_batchnorm(copy.deepcopy(net))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref, got = net.extract_features(x), folded.extract_features(x)
    # the same function; float sums are re-associated (measured max 2.5e-5 on 8 tiles)
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
    # a channels-last module still saves row-major arrays
    assert all(a.flags.c_contiguous for a in module_tensors(folded).values())


def test_the_tuned_encoder_reuses_the_probes_frozen_blocks(views):
    probe, tune = load_model("effnet-probe"), load_model("effnet-tune")
    net, shared = tune._inference_net()
    assert shared == foundation.SHARED_BLOCKS  # its frozen blocks are the pretrained ones
    enc = foundation.encoder(probe.backbone, probe.device)
    enc._memo.clear()
    probe.score(views[:2])
    after_probe = list(enc._memo)
    shared_scores = tune.score(views[:2])
    assert list(enc._memo) == after_probe  # the tuned model hit the memo: nothing new computed
    # computed apart, from its own half-precision copy of those blocks: the same up to that
    # rounding (measured at most 0.027 on the 32 held-out views; logits span about +-15)
    tune._folded = (tune.model_, net, 0)
    own = tune.score(views)
    tune._folded = (tune.model_, net, shared)
    np.testing.assert_allclose(tune.score(views), own, atol=0.1)
    np.testing.assert_allclose(shared_scores, own[:2], atol=0.1)


def test_frozen_blocks_that_are_not_the_pretrained_ones_are_not_shared():
    tune = load_model("effnet-tune")
    tune.model_ = copy.deepcopy(tune.model_)
    with torch.no_grad():
        tune.model_.net._conv_stem.weight.mul_(1.01)
    assert tune._inference_net()[1] == 0
