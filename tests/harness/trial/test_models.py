from __future__ import annotations

import re

import pytest

from harness.grid.specs import ModelRef
from harness.trial.models import build_loss, build_optimizer, optimizer_keywords
from harness.trial.models import build_model as build_ref
from tests import helpers

ROOT = helpers.ROOT


def build_model(name: str, width: float, kwargs: dict | None = None, **shape):
    """A built-in model through the one path every model takes (``ModelRef``)."""
    return build_ref(ModelRef(name, "", width, kwargs or {}), **shape)


def test_tiny_cnn_has_3300_weights_and_scales_with_width():
    n1 = build_model("tiny_cnn", 1).count_params()
    assert n1 == 3300  # pinned: the README and docs state it, and results record it
    # every "N weights" / "N-weight" the README and docs/grids.md state is this count
    for doc in ("README.md", "docs/grids.md"):
        stated = re.findall(r"(\d[\d,]*)[ -]weights?\b", (ROOT / doc).read_text())
        assert stated and {int(n.replace(",", "")) for n in stated} == {n1}, (doc, stated)
    n2 = build_model("tiny_cnn", 2).count_params()
    assert 2.5 * n1 < n2 < 4.5 * n1  # filters and hidden units both double
    layers = [type(layer).__name__ for layer in build_model("tiny_cnn", 1).layers]
    assert layers.count("Conv2D") == 2 and layers.count("Dense") == 2


def test_tutorial_cnn_matches_the_tensorflow_tutorial():
    model = build_model("tutorial_cnn", 1)
    assert abs(model.count_params() - 3_274_634) < 1000  # "about 3.27M"
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64] and convs[0].kernel_size == (5, 5)
    wide = build_model("tutorial_cnn", 2).layers
    assert [c.filters for c in wide if hasattr(c, "filters")] == [64, 128]
    dropout = [layer for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert dropout[0].rate == 0.4


def test_keras_cnn_and_mlp():
    keras_cnn = build_model("keras_cnn", 1)
    assert [type(x).__name__ for x in keras_cnn.layers].count("Dropout") == 2
    mlp = build_model(
        "mlp", 1, {"hidden": 128, "hidden_activation": "sigmoid", "output_activation": "linear"}
    )
    assert mlp.count_params() == 784 * 128 + 128 + 128 * 10 + 10
    assert mlp.layers[-1].activation.__name__ == "linear"


def test_named_optimizers():
    gd = build_optimizer("gd", 0.1)
    assert type(gd).__name__ == "SGD" and float(gd.momentum) == 0.0
    assert float(build_optimizer("momentum", 0.1).momentum) == 0.9
    assert float(build_optimizer("momentum", 0.1, {"momentum": 0.5}).momentum) == 0.5
    assert type(build_optimizer("adadelta", 1)).__name__ == "Adadelta"
    assert type(build_optimizer("nadam", 1e-3)).__name__ == "Nadam"
    assert "momentum" in optimizer_keywords("momentum")
    assert "rho" in optimizer_keywords("rmsprop")
    assert "learning_rate" not in optimizer_keywords("adam")


@pytest.mark.parametrize(
    ("loss", "activation", "from_logits"),
    [("crossentropy", "softmax", False), ("crossentropy", "linear", True)],
)
def test_crossentropy_reads_logits_only_for_a_linear_output(loss, activation, from_logits):
    assert build_loss(loss, activation).get_config()["from_logits"] is from_logits
    assert type(build_loss("mse", activation)).__name__ == "MeanSquaredError"
