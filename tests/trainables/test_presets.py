"""Model presets: shapes, analytic parameter counts, overrides, torch-free import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from trainables.model.config import GPT2_VOCAB, ModelConfig
from trainables.model.gpt import GPT
from trainables.model.presets import MODEL_PRESETS, list_model_presets, model_preset

PAPER_SIZES = {"oec-16m": 16e6, "oec-29m": 29e6, "oec-57m": 57e6, "oec-109m": 109e6, "oec-221m": 221e6}
PAPER_SHAPES = {
    "oec-16m": (6, 224),
    "oec-29m": (9, 320),
    "oec-57m": (12, 480),
    "oec-109m": (15, 640),
    "oec-221m": (21, 832),
}


def test_presets_import_without_torch() -> None:
    code = "import sys, trainables.model.presets; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", list(MODEL_PRESETS))
@pytest.mark.parametrize("tie", [False, True])
def test_analytic_count_matches_the_model(name: str, tie: bool) -> None:
    cfg = model_preset(name, tie_weights=tie)
    with torch.device("meta"):  # no memory, no init cost, same parameters
        model = GPT(cfg)
    assert model.num_params() == cfg.num_params()


def test_paper_shapes_and_sizes() -> None:
    listed = list_model_presets()
    for name, (layers, width) in PAPER_SHAPES.items():
        cfg, n = listed[name]
        assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size) == (layers, width, 4, GPT2_VOCAB)
        assert not cfg.tie_weights and cfg.qk_norm
        # the paper's names count one V x d matrix (rounded names): within 10 % with the head tied
        tied = model_preset(name, tie_weights=True).num_params()
        assert abs(tied - PAPER_SIZES[name]) / PAPER_SIZES[name] < 0.10, (name, tied)
        assert n == tied + cfg.vocab_size * cfg.n_embd
    gpt2 = listed["gpt2-124m"][1]
    assert abs(gpt2 - 124e6) / 124e6 < 0.01


def test_small_presets_fit_their_purpose() -> None:
    listed = list_model_presets()
    assert listed["tiny"][1] < 1_000_000
    assert 1_000_000 < listed["cpu-small"][1] < 10_000_000
    assert list_model_presets(vocab_size=1024)["tiny"][1] < 1_000_000
    assert list_model_presets(vocab_size=1000)["oec-16m"][0].vocab_size == 1000


def test_overrides_and_round_trip() -> None:
    cfg = model_preset("tiny", n_layer=3, qk_norm=False)
    assert (cfg.n_layer, cfg.qk_norm) == (3, False)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: model_preset("nope"), "unknown model preset 'nope'"),
        (lambda: model_preset("tiny", depth=3), "unknown model override"),
        (lambda: model_preset("tiny", n_head=5), "divisible by model.n_head"),
        (lambda: model_preset("tiny", n_layer=0), "model.n_layer must be a positive integer"),
        (lambda: ModelConfig.from_dict({"n_layer": 1, "n_embd": 8, "n_head": 2, "x": 1}), "unknown field"),
    ],
)
def test_bad_presets_are_rejected_clearly(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()


def test_paper_count_matches_the_paper_names() -> None:
    # the paper names its models by the non-embedding parameters plus one V x d matrix (as if tied)
    for name, size in PAPER_SIZES.items():
        cfg = model_preset(name)
        assert abs(cfg.paper_params() - size) / size < 0.03, (name, cfg.paper_params())
        assert cfg.paper_params() == cfg.non_embedding_params() + cfg.vocab_size * cfg.n_embd
        assert cfg.num_params() == cfg.non_embedding_params() + 2 * cfg.vocab_size * cfg.n_embd  # untied
    assert model_preset("oec-16m").hidden_dim == 768  # 256 * ceil(597 / 256), the official rounding


def test_cpu_scaled_shapes_keep_the_papers_ratios() -> None:
    listed = list_model_presets()
    paper = {name: listed[name][0] for name in PAPER_SHAPES}
    scaled = {name: listed[f"{name}-cpu"][0] for name in PAPER_SHAPES}
    small, large = "oec-16m", "oec-221m"
    for name, cfg in scaled.items():
        assert cfg.n_layer * 3 == paper[name].n_layer and cfg.n_head == 4 and cfg.head_dim % 2 == 0
        # about a seventh of the width; the SwiGLU width is the official rule at a granularity of 32
        assert cfg.n_embd % 8 == 0 and abs(cfg.n_embd * 7 - paper[name].n_embd) <= 4 * 7, name
        assert cfg.hidden_dim % 32 == 0 and cfg.hidden_dim - 32 < 8 * cfg.n_embd // 3 <= cfg.hidden_dim
    for ratio in (lambda c: c.n_embd, lambda c: c.n_layer, lambda c: c.non_embedding_params()):
        ours, theirs = ratio(scaled[large]) / ratio(scaled[small]), ratio(paper[large]) / ratio(paper[small])
        assert abs(ours / theirs - 1) < 0.1, (ours, theirs)
    counts = [c.non_embedding_params() for c in scaled.values()]
    assert counts == sorted(counts)
