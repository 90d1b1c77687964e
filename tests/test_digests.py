"""Digests (``unet_lessons.digests``): what saved runs compare a training cell by."""

import os
import subprocess
import sys

import torch

from unet_lessons.digests import digest, package_digest, weights_digest
from unet_lessons.losses import DiceCELoss


def _scaled_l1(scale):
    """A loss that closes over a constant, as a lesson's lambda would."""
    return lambda logits, target: scale * (logits - target).abs().mean()


def _validation():
    """A new validation function on every call, closing over a new (equal) probe tensor."""
    probe = torch.linspace(-1, 1, 256).reshape(1, 1, 16, 16)
    return lambda net: {"mean logit": net(probe).mean().item()}


def test_digests_tell_functions_apart_by_what_they_compute():
    assert digest(lambda x: x + 1) != digest(lambda x: x + 2)
    assert digest(_scaled_l1(1.0)) == digest(_scaled_l1(1.0))
    assert digest(_scaled_l1(1.0)) != digest(_scaled_l1(2.0))
    assert digest(_validation()) == digest(_validation())  # new lambdas, new equal tensors
    namespace = {}
    exec("def loss(logits, target):\n    return SCALE * (logits - target).abs().mean()\n", namespace)
    before = digest(namespace["loss"])
    namespace["SCALE"] = 2.0  # a global the function reads, changed in another cell
    assert digest(namespace["loss"]) != before
    assert digest(DiceCELoss()) == digest(DiceCELoss()) != digest(DiceCELoss(lambda_ce=0.5))
    weights = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0]))
    assert digest(weights) != digest(torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0])))


def test_digests_do_not_depend_on_the_hash_seed():
    # A kernel restart brings another hash seed, and with it another order of a set of strings.
    code = "from unet_lessons.digests import digest; print(digest(lambda x: x in {'dice', 'ce', 'focal', 'tversky'}))"
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(digests) == 1


def test_weights_and_package_digests():
    torch.manual_seed(0)
    a, b = torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(1, 2, 3)
    assert weights_digest(a) != weights_digest(b)
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(b)
    assert package_digest() == package_digest() and len(package_digest()) == 64
