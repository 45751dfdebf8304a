"""Finding a model's linear head and capturing its inputs and outputs.

Checked against what the model's own modules compute (the body's output is
the head's input, the head's output or the model's output are the logits).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avalanche_mixplugins.head import HeadCapture, find_linear_head


class WithGetter(nn.Module):
    """A timm-style model: ``get_classifier()`` names the head, which is not
    the last linear layer registered."""

    def __init__(self, classifier=True):
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.body = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
        self.aux = nn.Linear(3, 2)
        self.classifier = classifier

    def get_classifier(self):
        return self.head if self.classifier else nn.Identity()

    def forward(self, x):
        return self.head(self.body(x))


class Masked(nn.Module):
    """A head followed by a masking layer (as Avalanche's IncrementalClassifier)."""

    def __init__(self, width=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.Tanh())
        self.fc = nn.Linear(5, 3)
        self.width = width

    def forward(self, x):
        z = self.fc(self.body(x))
        if self.width == 3:
            return z.masked_fill(torch.tensor([False, False, True]), -1e4)
        return z[:, : self.width]


def test_find_linear_head_prefers_get_classifier_then_the_last_linear():
    model = WithGetter()
    name, head = find_linear_head(model)
    assert name == "head" and head is model.head
    model = WithGetter(classifier=False)  # the getter gives no nn.Linear
    name, head = find_linear_head(model)
    assert name == "aux" and head is model.aux
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4))
    assert find_linear_head(seq) == ("2", seq[2])
    with pytest.raises(
        ValueError,
        match=r"^Sequential has no nn.Linear classification head, which "
        r'grad_space="last" needs; use grad_space="full" \(exact per-sample '
        r"gradients of all parameters\) for this model$",
    ):
        find_linear_head(nn.Sequential(nn.ReLU()))


def test_capture_records_the_heads_input_and_the_models_logits():
    torch.manual_seed(0)
    model = Masked()
    cap = HeadCapture(model, model.fc)
    x1, x2 = torch.randn(4, 4), torch.randn(2, 4)
    out1, out2 = model(x1), model(x2)
    h1, z1 = cap.lookup(x1)
    assert torch.equal(h1, model.body(x1))
    assert torch.equal(z1, out1)  # the masked logits: the model's output
    assert not z1.requires_grad and not h1.requires_grad
    h2, z2 = cap.lookup(x2)
    assert torch.equal(h2, model.body(x2)) and torch.equal(z2, out2)
    assert cap.lookup(x1.clone()) is None  # found by identity, not value
    # the latest call on the same tensor wins
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    out3 = model(x1)
    assert torch.equal(cap.lookup(x1)[1], out3)
    assert len(cap.records) == 3
    cap.clear()
    assert cap.records == [] and cap.lookup(x1) is None


def test_capture_keeps_the_head_output_when_the_model_output_differs_in_shape():
    torch.manual_seed(0)
    model = Masked(width=2)
    cap = HeadCapture(model, model.fc)
    x = torch.randn(3, 4)
    model(x)
    h, z = cap.lookup(x)
    assert torch.equal(z, model.fc(model.body(x)))
    assert z.shape == (3, 3)


def test_disabled_or_removed_capture_records_nothing():
    model = Masked()
    cap = HeadCapture(model, model.fc)
    cap.enabled = False
    x = torch.randn(2, 4)
    model(x)
    assert cap.records == [] and cap.lookup(x) is None
    cap.enabled = True
    model.fc(torch.randn(2, 5))  # the head alone, no model call: nothing to attach
    assert cap.records == []
    model(x)
    assert cap.lookup(x) is not None
    cap.remove()
    assert cap.records == []
    model(x)
    assert cap.records == []
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not model.fc._forward_hooks


def test_a_disabled_capture_leaves_earlier_records_alone():
    torch.manual_seed(0)
    model = Masked()
    cap = HeadCapture(model, model.fc)
    x = torch.randn(2, 4)
    out = model(x)
    cap.enabled = False
    model(torch.randn(2, 4))
    h, z = cap.lookup(x)
    assert torch.equal(h, model.body(x)) and torch.equal(z, out)
    cap.remove()
    cap.remove()  # removing twice is harmless
    assert cap.records == []
