"""The bench's machine limit is made of the model's own matrix products."""

from __future__ import annotations

import pytest

from vsearch.bench.indexing import BASE_CONFIG, gemm_shapes, model_limit, videomae_flops


def test_the_limit_covers_every_flop_the_model_counts_but_the_head() -> None:
    shapes = gemm_shapes(BASE_CONFIG, batch=2)
    counted = sum(2.0 * count * groups * m * k * n for _, count, groups, m, k, n in shapes)
    head = 2.0 * BASE_CONFIG["hidden_size"] * BASE_CONFIG["num_labels"]
    assert counted == pytest.approx(2 * (videomae_flops(BASE_CONFIG) - head))
    assert ("mlp up", 12, 1, 2 * 1568, 768, 3072) in shapes


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "openvino fp32", "openvino int8"])
def test_model_limit_times_each_product(precision: str) -> None:
    if precision.startswith("openvino"):
        pytest.importorskip("nncf")
    tiny = dict(BASE_CONFIG, image_size=32, hidden_size=48, intermediate_size=96, num_attention_heads=3,
                num_hidden_layers=2)
    seconds, rows = model_limit(tiny, precision, batch=2, repeats=2)
    assert seconds > 0 and len(rows) == 5  # attention's two products are one fused kernel
    assert seconds == pytest.approx(sum(float(r[-1]) for r in rows), rel=0.05, abs=0.01)


def test_the_end_to_end_ratio_is_the_median_round_and_names_its_run() -> None:
    from vsearch.bench.indexing import Ratio, Result

    runs = [Result(f"run {i}", 24, s, {"of which the decoders' start": 0.4}) for i, s in enumerate((9.0, 8.8, 10.8))]
    ratio = Ratio(runs, [7.5, 8.0, 8.0])
    assert ratio.ratios == pytest.approx([1.20, 1.10, 1.35])
    assert ratio.after_start == pytest.approx([1.1467, 1.05, 1.30], abs=1e-3)
    assert ratio.median == pytest.approx(1.20) and ratio.run.name == "run 0" and ratio.middle == 0
    assert ratio.describe().startswith("end to end / model stage alone: 1.20x, median of 3 rounds (1.20, 1.10, 1.35); "
                                       "1.15x after")
