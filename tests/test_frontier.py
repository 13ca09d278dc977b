"""Tests for ladc/bench/frontier.py and the pipeline's `students:` list: FLOPs, the pick within `max_drop`, and a tiny
pipeline that trains, exports and benches several shapes and reports the frontier."""

from __future__ import annotations

import json

import pytest
import yaml

from ladc.bench.frontier import flops_per_sequence, pick_fastest_within
from ladc.commands.pipeline import StudentSpec, load_pipeline_config, pipeline_stages, run_pipeline
from ladc.errors import LadcError
from tests.helpers import tiny_config, tiny_tokenizer_of, write_tiny_base_model, write_tiny_sst2


def test_flops_per_sequence_by_hand():
    shape = {"num_layers": 2, "hidden_size": 4, "intermediate_size": 8, "num_heads": 1}
    # per layer at L=3: QKV+O 8*3*16 = 384, scores+context 4*9*4 = 144, FFN 4*3*4*8 = 384 -> 912; pooler 2*16 = 32
    assert flops_per_sequence(shape, seq_len=3) == 2 * 912 + 32
    minilm = {"num_layers": 6, "hidden_size": 384, "intermediate_size": 1536, "num_heads": 12}
    narrow = {"num_layers": 3, "hidden_size": 192, "intermediate_size": 768, "num_heads": 6}
    assert 7.5 < flops_per_sequence(minilm) / flops_per_sequence(narrow) < 8.5  # half the depth, a quarter per layer


def _point(label, role, holdout, b32, b1=1.0):
    return {
        "label": label,
        "role": role,
        "holdout": holdout,
        "holdout_examples": 100,
        "p50_ms_b32": b32,
        "p50_ms_b1": b1,
    }


def test_pick_takes_the_fastest_student_within_max_drop_on_the_holdout():
    points = [
        _point("teacher", "teacher", 0.90, 100.0),
        _point("teacher best", "teacher", None, 50.0),
        _point("wide", "student", 0.895, 40.0),
        _point("narrow", "student", 0.885, 10.0),  # 1.5 points below the teacher
        _point("tiny", "student", 0.70, 2.0),
    ]
    pick, why = pick_fastest_within(points, max_drop=2.0)
    assert pick["label"] == "narrow" and "2 students" in why and "0.8850 vs 0.9000 on 100 rows" in why
    pick, _ = pick_fastest_within(points, max_drop=1.0)
    assert pick["label"] == "wide"
    pick, why = pick_fastest_within(points, max_drop=0.1)
    assert pick is None and why.startswith("no student is within 0.1 points")
    pick, why = pick_fastest_within(points, max_drop=100.0, batch="b1")
    assert pick["label"] == "wide" and "fastest at b1" in why  # all at 1.0 ms at b1: the first of the ties
    points[0]["holdout"] = None
    assert pick_fastest_within(points, 2.0)[0] is None


def test_student_specs_name_their_stages_and_refuse_duplicates(tmp_path):
    assert StudentSpec(layers=3, hidden=192).stage_name() == "3L-192H"
    assert StudentSpec(hidden=256, init="random", seed=1).stage_name() == "256H-random-seed1"
    assert StudentSpec(name="mine", hidden=8).stage_name() == "mine"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"students": [{"hidden": 192}, {"hidden": 192}]}))
    with pytest.raises(LadcError, match="students 192H appear twice"):
        load_pipeline_config(path)
    path.write_text(yaml.safe_dump({"students": [{"hidden": 192}, {"layers": 2, "hidden": 192}]}))
    cfg = load_pipeline_config(path)
    assert pipeline_stages(cfg) == ("teacher", "student", "onnx", "teacher-onnx", "student-192H", "onnx-192H",
                                    "student-2L-192H", "onnx-2L-192H", "bench", "report")  # fmt: skip
    assert cfg.distill.optim.epochs == 4.0  # distill's own default, untouched by the students list
    path.write_text(
        yaml.safe_dump({"distill": {"optim": {"lr": 2e-4}}, "students": [{"hidden": 8, "lr": 1e-3, "seed": 3}]})
    )
    from pathlib import Path

    from ladc.commands.pipeline import _stage_configs

    stages = _stage_configs(load_pipeline_config(path), Path("run"))
    narrow = stages["student-8H-seed3"]
    assert (narrow.student_hidden, narrow.optim.lr, narrow.optim.seed, narrow.optim.epochs) == (8, 1e-3, 3, 4.0)
    assert (stages["student"].student_hidden, stages["student"].optim.lr) == (None, 2e-4)
    assert narrow.output == str(Path("run") / "student-8H-seed3") and narrow.teacher == str(Path("run") / "teacher")


def test_bench_target_names_one_artifact_of_an_export_dir(tmp_path):
    from ladc.deploy.targets import resolve_targets

    export = tmp_path / "onnx"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"")
    (export / "export.json").write_text(json.dumps({"artifacts": [{"name": "fp32", "path": "model.onnx"}]}))
    with pytest.raises(LadcError, match="names no chosen artifact; export with --select fastest"):
        resolve_targets([f"{export}@chosen"])
    with pytest.raises(LadcError, match="has no artifact 'fp3' \\(did you mean 'fp32'\\?\\); it has fp32"):
        resolve_targets([f"{export}@fp3"])
    with pytest.raises(LadcError, match="is not a `ladc export` dir"):
        resolve_targets([f"{tmp_path / 'nothing'}@chosen"])


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory, tiny_vocab_file):
    tmp = tmp_path_factory.mktemp("frontier")
    config = tiny_config(num_layers=4, num_attention_heads=4)
    base = write_tiny_base_model(tmp / "base", config, tiny_tokenizer_of(tiny_vocab_file))
    glue = write_tiny_sst2(tmp / "glue")
    optim = {"lr": 1e-3, "batch_size": 8, "max_steps": 6, "warmup_ratio": 0.0}
    raw = {
        "run_dir": str(tmp / "run"),
        "data": {"task": "sst2", "data_dir": str(glue), "cache_dir": str(tmp / "cache")},
        "teacher": {"model": str(base), "optim": optim},
        "distill": {"student_layers": 2, "gate_lr": 3e-4, "prune_samples": 16, "optim": optim},
        "export": {"quantize": "dynamic", "allow_drop": 100.0, "select": "fastest", "select_iterations": 2},
        "bench": {"batch_sizes": [1, 32], "seq_lens": [16], "warmup": 1, "iterations": 2},
        "students": [{"layers": 1, "hidden": 8, "heads": 1}],
        "max_drop": 100.0,
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    lines: list[str] = []
    report = run_pipeline(load_pipeline_config(path), echo=lines.append)
    return tmp / "run", report, lines


@pytest.mark.timeout(600)  # its fixture runs a whole tiny pipeline: 3 trainings, 3 exports with --select, a bench
def test_a_pipeline_with_students_reports_the_frontier(frontier_run):
    run_dir, report, lines = frontier_run
    running = [line.split(":")[0] for line in lines if line.endswith("running")]
    assert running == ["[1/8] teacher", "[2/8] student", "[3/8] onnx", "[4/8] teacher-onnx",
                       "[5/8] student-1L-8H-1A", "[6/8] onnx-1L-8H-1A", "[7/8] bench", "[8/8] report"]  # fmt: skip
    frontier = json.loads((run_dir / "frontier.json").read_text())
    points = frontier["points"]
    roles = [p["role"] for p in points]
    assert roles == ["teacher", "teacher", "student", "student"]
    bench = json.loads((run_dir / "bench" / "bench.json").read_text())
    timed = {t["name"] for t in bench["targets"]}
    for point in points:
        assert point["target"] in timed  # every point is one bench target, at its chosen artifact
    chosen = json.loads((run_dir / "onnx-1L-8H-1A" / "export.json").read_text())["selection"]["chosen"]
    narrow = points[3]
    assert narrow["target"] == f"onnx-1L-8H-1A/{chosen}" and narrow["shape_name"] == "1L-8H-16I"
    assert narrow["shape"] == {"num_layers": 1, "hidden_size": 8, "intermediate_size": 16, "num_heads": 1}
    assert points[0]["parameters"] > points[2]["parameters"] > narrow["parameters"]
    assert points[0]["gflops"] > points[2]["gflops"] > narrow["gflops"]
    teacher_b32 = points[0]["p50_ms_b32"]
    assert narrow["speedup_b32"] == round(teacher_b32 / narrow["p50_ms_b32"], 2)
    # every student is within 100 points: the pick is the fastest at batch 32
    fastest = min(points[2:], key=lambda p: p["p50_ms_b32"])
    assert frontier["picked"] == fastest["label"]
    text = report.read_text()
    assert "## Accuracy-speed frontier" in text and f"**Picked:** `{fastest['label']}`" in text
    assert (run_dir / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
