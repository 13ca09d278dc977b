"""Outcome counts of every reader on generated inputs: rows, a one-line LadcError, or another exception (a crash).

Draws inputs from the strategies of tests/test_sources_fuzz.py, test_sources_fuzz_jsonl.py and test_config_fuzz.py
(GLUE TSV of every task, CSV/TSV and JSON Lines train files, --config YAML, arbitrary YAML bytes), feeds each to
the reader and counts what came out, by exception type and, for LadcErrors, by the first words of the message. No oracle here: the tests check the content; this
script answers "does anything other than a LadcError escape", also for an older ladc:

    PYTHONPATH=. python benchmarks/reliability.py --examples 300     # this checkout
    mkdir /tmp/old && git archive c421172 ladc | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python benchmarks/reliability.py --label c421172   # the code before issue 11

With --faults it instead runs the fault-injection and multi-process tests (tests/test_faults.py,
tests/test_distributed.py) and records, per command, the kill points tried and whether every one survived:

    PYTHONPATH=. python benchmarks/reliability.py --faults

Writes benchmarks/results/reliability-<label>.json (reliability-faults-<label>.json with --faults).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/ of this checkout; ladc from PYTHONPATH wins

import ladc  # noqa: E402
from ladc.data.data import load_raw  # noqa: E402
from ladc.data.tasks import get_task  # noqa: E402
from ladc.errors import LadcError  # noqa: E402
from ladc.runs.config import DataConfig, build_config  # noqa: E402
from tests import test_config_fuzz, test_sources_fuzz, test_sources_fuzz_jsonl  # noqa: E402


def _outcome(call) -> str:
    try:
        result = call()
    except LadcError as exc:
        words = re.sub(r"0x[0-9a-f]+|\d+", "N", re.sub(r"(?<!\S)/\S+", "FILE", str(exc)))
        return "LadcError: " + " ".join(words.split()[:5])[:60]
    except Exception as exc:  # noqa: BLE001 - counting what escapes is the point
        return f"CRASH {type(exc).__name__}"
    if hasattr(result, "__len__") and len(result) == 0:
        return "loaded 0 rows (an IndexError in load_tokenized before issue 11)"
    return "loaded"


def _glue(generated) -> str:
    layout, data = generated
    task = get_task(layout.task_name)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / task.glue_dir / f"{layout.stem}.tsv"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        return _outcome(lambda: load_raw(DataConfig(task=task.name, data_dir=root), layout.stem))


def _table(generated) -> str:
    task, suffix, text_names, label_name, data, _ = generated
    return _file(task, f"train{suffix}", text_names, label_name, data)


def _jsonl(generated) -> str:
    task, text_names, label_name, data = generated
    return _file(task, "train.jsonl", text_names, label_name, data)


def _file(task, name, text_names, label_name, data) -> str:
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / name
        path.write_bytes(data)
        config = DataConfig(task=task.name, train_file=str(path), text_fields=tuple(text_names), label_field=label_name)
        return _outcome(lambda: load_raw(config, "train"))


def _yaml(generated) -> str:
    cls, data = (generated[0], generated[-1])
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "config.yaml"
        path.write_bytes(data)
        return _outcome(lambda: build_config(cls, path, {}))


READERS = {
    "glue_tsv": (test_sources_fuzz.glue_files(), _glue),
    "csv_tsv": (test_sources_fuzz.table_files(), _table),
    "jsonl": (test_sources_fuzz_jsonl.jsonl_files(), _jsonl),
    "yaml": (test_config_fuzz.yaml_configs(), _yaml),
    "yaml_bytes": (st.tuples(st.sampled_from(test_config_fuzz.CONFIG_CLASSES), test_config_fuzz.YAML_BYTES), _yaml),
}


def count(strategy, run, examples: int) -> collections.Counter:
    outcomes: collections.Counter = collections.Counter()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def draw(generated):
        outcomes[run(generated)] += 1

    draw()
    return outcomes


def _machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    model = re.search(r"Model name:\s*(.+)", lscpu)
    return f"{model.group(1).strip() if model else platform.processor()}, {len(os.sched_getaffinity(0))} CPUs"


def faults(label: str, output: Path) -> None:
    """Run the fault and distributed tests as pytest would in CI; one row per test with its kill points."""
    from tests import test_faults

    points = {
        "tune-teacher": len(test_faults.TRAINING_CHAIN),
        "distill": len(test_faults.TRAINING_CHAIN),
        "export": len(test_faults.EXPORT_KILLS) + 1,  # + the kill into a fresh location
        "pipeline": len(test_faults.PIPELINE_CHAIN),
        "tune-teacher (damaged checkpoints)": 1,
    }
    xml = output / f"faults-{label}.xml"
    output.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
               "tests/test_faults.py", "tests/test_distributed.py"]  # fmt: skip
    started = time.time()
    proc = subprocess.run(command, capture_output=True, text=True)
    import xml.etree.ElementTree as ElementTree

    rows = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        rows.append({"test": case.get("name"), "seconds": float(case.get("time")), "passed": not failed,
                     "failure": (case.find("failure").get("message") or "")[:300] if failed else None})  # fmt: skip
    report = {
        "command": " ".join(sys.argv),
        "label": label,
        "machine": _machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "kill_points": points,
        "tests": rows,
        "pytest_exit": proc.returncode,
        "seconds": round(time.time() - started, 1),
    }
    for row in rows:
        print(f"{'ok  ' if row['passed'] else 'FAIL'} {row['seconds']:7.1f} s  {row['test']}")
    target = output / f"reliability-faults-{label}.json"
    target.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['machine']}; {report['seconds']} s; written to {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="generated inputs per reader")
    parser.add_argument("--label", default="current", help="name of the code under test (output file suffix)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--readers", default=",".join(READERS), help=f"comma-separated subset of {', '.join(READERS)}")
    parser.add_argument("--faults", action="store_true", help="run the kill-point and multi-process tests instead")
    args = parser.parse_args()
    if args.faults:
        faults(args.label, args.output)
        return
    started = time.time()
    report = {
        "command": " ".join(sys.argv),
        "label": args.label,
        "ladc_path": str(Path(ladc.__file__).parent),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "readers": {},
    }
    for name in args.readers.split(","):
        strategy, run = READERS[name]
        outcomes = count(strategy, run, args.examples)
        crashes = sum(n for outcome, n in outcomes.items() if outcome.startswith("CRASH"))
        report["readers"][name] = {"inputs": sum(outcomes.values()), "crashes": crashes, "outcomes": dict(outcomes)}
        print(f"{name}: {sum(outcomes.values())} inputs, {crashes} crashes")
        for outcome, n in outcomes.most_common():
            print(f"  {n:5d}  {outcome}")
    report["seconds"] = round(time.time() - started, 1)
    args.output.mkdir(parents=True, exist_ok=True)
    target = args.output / f"reliability-{args.label}.json"
    target.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {target}")


if __name__ == "__main__":
    main()
