"""`make bench` in --quick mode (resnet18, 64², one step): JSON keys, values, Markdown block, CLI."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cism_lib.tools import bench

PROSE = "# Benchmarks\n\nIntro: between `<!-- bench:cpu -->` lines.\n\n<!-- bench:gpu -->\nGPU TABLE\n<!-- /bench:gpu -->\n\nTail.\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """One quick CLI run writing into a temp dir whose doc already has prose and a GPU block."""
    tmp = tmp_path_factory.mktemp("bench")
    doc = tmp / "benchmarks.md"
    doc.write_text(PROSE)
    bench.main(["--device", "cpu", "--quick", "--out", str(tmp / "bench.json"), "--doc", str(doc)])
    return json.loads((tmp / "bench.json").read_text()), doc.read_text()


def test_json_has_every_measurement(quick_run: tuple[dict, str]) -> None:
    """Device, versions, settings and each section are present, with positive rates."""
    result, _ = quick_run
    assert {"device", "versions", "settings", "load_average", "train", "ratios", "cam", "seg",
            "crf", "synth", "pie", "flops"} <= set(result)
    assert result["device"]["type"] == "cpu" and result["versions"]["torch"] == torch.__version__
    assert result["settings"]["quick"] and result["settings"]["size"] == 64
    assert [(r["backbone"], r["method"], r["precision"]) for r in result["train"]] == [
        ("resnet18", m, p) for m in ("cam", "cian", "cism") for p in ("fp32", "bf16")]
    for row in result["train"]:
        assert row["images_per_s"] > 0 and row["step_s"] > 0 and row["peak_mem_mib"] >= 0
        assert row["images_per_s"] == pytest.approx(2 * 1 / row["step_s"])  # both images of 1 pair
        assert row["fwd_gflops_per_image"] > 0 and row["train_tflops_per_s"] > 0
    assert max(r["peak_mem_mib"] for r in result["train"]) > 0
    assert [c["precision"] for c in result["cam"]] == ["fp32", "bf16"]
    assert result["cam"][0]["images_per_s"] > 0 and result["cam"][0]["scales"] == [0.5, 1.0, 1.5, 2.0]
    assert {(r["precision"], r["kind"]) for r in result["seg"]} == {
        (p, k) for p in ("fp32", "bf16") for k in ("train", "infer")}
    assert all(r["images_per_s"] > 0 for r in result["seg"]) and result["compile"] is None
    assert result["synth"]["images_per_s"] > 0 and result["synth"]["size"] == 64


def test_ratios_and_shares_are_consistent(quick_run: tuple[dict, str]) -> None:
    """CISM/CAM, the CRF speed-up and the PIE share are the quotients of the measured numbers."""
    result, _ = quick_run
    ips = {r["method"]: r["images_per_s"] for r in result["train"] if r["precision"] == "bf16"}
    fp32 = {r["method"]: r["images_per_s"] for r in result["train"] if r["precision"] == "fp32"}
    ratios = result["ratios"]["resnet18"]
    assert ratios["cism_over_cam"] == pytest.approx(ips["cism"] / ips["cam"])
    assert ratios["cism_over_cian"] == pytest.approx(ips["cism"] / ips["cian"])
    assert ratios["cam_bf16_over_fp32"] == pytest.approx(ips["cam"] / fp32["cam"])
    crf = result["crf"]
    assert crf["workers"] == 2 and crf["pool_matches_single"]
    assert crf["speedup"] == pytest.approx(crf["pool_images_per_s"] / crf["single_images_per_s"])
    pie = result["pie"]
    assert pie["positions"] == 16  # 64 / stride 16 = 4 → 4 × 4
    assert pie["sim_fwd_gflops_per_pair"] == pytest.approx(2 * 16 * 16 * 256 / 1e9)  # D = proto_dim
    assert 0 < pie["share"] == pytest.approx(pie["pie_s"] / pie["step_s"])


def test_markdown_block_replaces_only_its_markers(quick_run: tuple[dict, str], tmp_path: Path) -> None:
    """The CPU block is added beside the GPU block and prose; a second update replaces it."""
    _, text = quick_run
    assert text.startswith(PROSE.rstrip()) and "GPU TABLE" in text
    assert "| resnet18 | cism |" in text and "CISM ÷ CAM" in text
    doc = tmp_path / "b.md"
    doc.write_text(text)
    bench.update_doc(doc, "cpu", "NEW")
    again = doc.read_text()
    assert again.count("\n<!-- bench:cpu -->\n") == 1 and "| resnet18 | cism |" not in again
    assert "<!-- bench:cpu -->\nNEW\n<!-- /bench:cpu -->" in again and "GPU TABLE" in again


def test_update_doc_exact_text(tmp_path: Path) -> None:
    """Hand-written before/after: text outside the markers is kept byte for byte."""
    doc = tmp_path / "d.md"
    doc.write_text("a\n<!-- bench:cpu -->\nold\n<!-- /bench:cpu -->\nb\n")
    bench.update_doc(doc, "cpu", "x\ny\n")
    assert doc.read_text() == "a\n<!-- bench:cpu -->\nx\ny\n<!-- /bench:cpu -->\nb\n"
    doc.write_text("see `<!-- bench:cpu -->`\n<!-- bench:cpu -->\nold\n<!-- /bench:cpu -->\n")
    bench.update_doc(doc, "cpu", "new")  # an inline mention in prose is not a marker
    assert doc.read_text() == "see `<!-- bench:cpu -->`\n<!-- bench:cpu -->\nnew\n<!-- /bench:cpu -->\n"
    bench.update_doc(tmp_path / "new.md", "gpu", "g")
    assert (tmp_path / "new.md").read_text() == "<!-- bench:gpu -->\ng\n<!-- /bench:gpu -->\n"


def test_flops_hand_counted() -> None:
    """CIAN adds exactly its affinity FLOPs to CAM; conv-only CAM FLOPs scale with the area."""
    cam64, cian64 = (bench.forward_flops("resnet18", m, 64) for m in ("cam", "cian"))
    n, c, i = 4 * 4, 512, 64  # positions at stride 16, resnet18 channels, CIAN inner channels (c/8)
    convs = 3 * 2 * c * i * n + 2 * i * c * n  # θ, φ, g once per image; W_z
    bmms = 2 * (2 * n * i * (2 * n))  # θᵀφ and g·affinityᵀ
    assert cian64 - cam64 == convs + bmms  # one direction per image (pair total / 2)
    assert bench.forward_flops("resnet18", "cam", 128) == 4 * cam64


def test_mfu_formula() -> None:
    """MFU = images/s × 3 × forward FLOPs ÷ peak: 500 × 3 × 65 GFLOPs / 989 TFLOP/s ≈ 9.86 %."""
    assert bench.mfu(500, 65e9, 989) == pytest.approx(500 * 3 * 65e9 / 989e12)
    assert bench.mfu(500, 65e9, 989) == pytest.approx(0.098584, rel=1e-4)


def test_random_pair_batch_labels() -> None:
    """Every pair shares a class; l_co = l_q l_r and l_q\\co = l_q - l_co are 0/1."""
    b = bench.random_pair_batch(6, 8, num_classes=5, seed=1)
    assert b["image_q"].shape == (6, 3, 8, 8)
    assert (b["label_co"].sum(1) >= 1).all()
    assert torch.equal(b["label_co"], b["label_q"] * b["label_r"])
    assert torch.equal(b["label_q_nc"] + b["label_co"], b["label_q"])
    assert set(b["label_r_nc"].unique().tolist()) <= {0.0, 1.0}


def test_cli_quick_defaults_then_flags() -> None:
    """--quick gives the tiny defaults; explicit flags override them; outputs are separate."""
    s, out = bench.parse_settings(["--quick", "--size", "96", "--backbones", "resnet34",
                                   "efficientnet_lite0", "--no-doc"])
    assert (s.size, s.steps, s.backbones, s.quick) == (96, 1, ("resnet34", "efficientnet_lite0"), True)
    assert out == {"no_doc": True}
    full, _ = bench.parse_settings(["--peak-tflops", "989"])
    assert (full.size, full.batch, full.steps, full.peak_tflops) == (256, 8, 5, 989.0)
    assert full.backbones == ("resnet50", "efficientnet_lite0")


def test_command_line_round_trip() -> None:
    """The command printed with a table parses back to the same settings."""
    argv = ["--device", "cpu", "--size", "128", "--batch", "2", "--with-data", "--cam-scales", "1",
            "2", "--threads", "1"]
    s, _ = bench.parse_settings(argv)
    line = bench.command_line(asdict(s))
    assert line.startswith("python -m cism_lib.tools.bench --device cpu --size 128 --batch 2")
    assert bench.parse_settings(line.split()[3:])[0] == s


def test_with_data_uses_the_real_pipeline(tmp_path: Path) -> None:
    """--with-data trains from pipeline.pair_dataset batches (SynthAerial, 64², one pair)."""
    s = bench.BenchSettings(**{**bench.QUICK, "with_data": True})
    data = bench.pipeline_pairs(s, "resnet18", tmp_path / "synth")
    assert len(data) >= 2 and (tmp_path / "synth" / "train").is_dir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = bench.bench_train(s, "resnet18", "cism", data)
    finally:
        torch.set_num_threads(threads)
    assert row["with_data"] and row["images_per_s"] > 0 and len(row["step_s_all"]) == 1
