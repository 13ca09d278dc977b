"""`ladc predict` throughput (rows/s) of one artifact: length-sorted dynamic padding against the same artifact padded
to 128 tokens, and against `transformers.pipeline` on the teacher, on a dev file and on a file made by repeating it.

Not run for figures yet: run it on a quiet machine and record the table in benchmarks/RESULTS.md with command,
machine and date.

Usage (repo root; nothing else running):
    python benchmarks/predict_throughput.py runs/demo/onnx --teacher runs/demo/teacher \
        --input ../shared/glue/SST-2/dev.tsv --repeat-to 100000 --output benchmarks/results/predict_throughput.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ladc.commands.predict import PredictConfig, open_predictor, run_predict


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="export dir (its chosen artifact), HF dir or model file")
    parser.add_argument("--artifact", default=None)
    parser.add_argument("--teacher", default=None, help="HF teacher dir for the transformers.pipeline baseline")
    parser.add_argument("--input", default="../shared/glue/SST-2/dev.tsv")
    parser.add_argument("--repeat-to", type=int, default=100_000, help="rows of the repeated file (0: skip it)")
    parser.add_argument("--pipeline-rows", type=int, default=872, help="rows given to the pipeline baseline")
    parser.add_argument("--output", default="benchmarks/results/predict_throughput.json")
    return parser.parse_args(argv)


def _repeated(source: Path, rows: int, folder: Path) -> Path:
    lines = source.read_text().splitlines()
    header, body = lines[0], [line for line in lines[1:] if line.strip()]
    target = folder / f"repeated-{rows}{source.suffix}"
    with target.open("w") as handle:
        handle.write(header + "\n")
        for i in range(rows):
            handle.write(body[i % len(body)] + "\n")
    return target


def _ladc_rows_per_s(args, source: Path, folder: Path) -> dict:
    out = folder / "predictions.jsonl"
    cfg = PredictConfig(target=args.target, input=str(source), output=str(out), artifact=args.artifact, progress=False)
    result = run_predict(cfg)
    return {"rows": result["rows"], "rows_per_s": result["rows_per_s"], "artifact": result["artifact"]}


def _padded_rows_per_s(args, source: Path) -> dict:
    """The same artifact with every row padded to 128 tokens (what a fixed-shape deployment does)."""
    from ladc.data.data import make_collator

    predictor = open_predictor(args.target, args.artifact)
    predictor.collate = make_collator(predictor.tokenizer, predictor.task, pad_to_multiple_of=128)
    texts = [(line.split("\t")[0],) for line in source.read_text().splitlines()[1:] if line.strip()]
    started = time.perf_counter()
    predictor.logits(texts, batch_size=32)
    return {"rows": len(texts), "rows_per_s": round(len(texts) / (time.perf_counter() - started), 1)}


def _pipeline_rows_per_s(teacher: str, source: Path, rows: int) -> dict:
    from transformers import pipeline

    texts = [line.split("\t")[0] for line in source.read_text().splitlines()[1:] if line.strip()][:rows]
    classify = pipeline("text-classification", model=teacher, device="cpu")
    started = time.perf_counter()
    classify(texts, batch_size=32)
    return {"rows": len(texts), "rows_per_s": round(len(texts) / (time.perf_counter() - started), 1)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    source = Path(args.input)
    result = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "figures": {}}
    with tempfile.TemporaryDirectory() as folder:
        figures = result["figures"]
        figures["ladc predict, dev"] = _ladc_rows_per_s(args, source, Path(folder))
        figures["same artifact padded to 128, dev"] = _padded_rows_per_s(args, source)
        if args.repeat_to:
            figures[f"ladc predict, {args.repeat_to} rows"] = _ladc_rows_per_s(
                args, _repeated(source, args.repeat_to, Path(folder)), Path(folder)
            )
        if args.teacher:
            figures["transformers.pipeline on the teacher"] = _pipeline_rows_per_s(args.teacher, source,
                                                                                   args.pipeline_rows)  # fmt: skip
    for name, row in result["figures"].items():
        print(f"{name}: {row}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
