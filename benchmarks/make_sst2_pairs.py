"""A sentence-pair task built from real SST-2 (issue 22): two sentences, labelled `entailment` when they share a
sentiment and `not_entailment` when they do not, written as RTE-style CSV files ladc reads with `--task rte
--train-file ... --dev-file ... --text-fields sentence1,sentence2`.

It stands in for an entailment task we cannot ship: the model must encode both sentences and compare them, which a
single-sentence classifier never does. Train pairs come from SST-2 train, dev pairs from SST-2 dev only.

Usage:
    python benchmarks/make_sst2_pairs.py --glue ../shared/glue --out runs/data/sst2-pairs --train 4000 --dev 872
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path


def read_sst2(path: Path) -> list[tuple[str, int]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [(row[0].strip(), int(row[1])) for row in reader if row and row[0].strip()]


def make_pairs(rows: list[tuple[str, int]], count: int, seed: int) -> list[tuple[str, str, str]]:
    """`count` pairs, half with the same sentiment, half with different ones, in random order (seeded)."""
    rng = random.Random(seed)
    by_label = {0: [r for r in rows if r[1] == 0], 1: [r for r in rows if r[1] == 1]}
    pairs = []
    for index in range(count):
        same = index % 2 == 0
        first_label = rng.randrange(2)
        second_label = first_label if same else 1 - first_label
        first, second = rng.choice(by_label[first_label]), rng.choice(by_label[second_label])
        pairs.append((first[0], second[0], "entailment" if same else "not_entailment"))
    rng.shuffle(pairs)
    return pairs


def write_csv(path: Path, pairs: list[tuple[str, str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "label"])
        writer.writerows(pairs)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue", type=Path, default=Path("../shared/glue"))
    parser.add_argument("--out", type=Path, default=Path("runs/data/sst2-pairs"))
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--dev", type=int, default=872)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train = read_sst2(args.glue / "SST-2" / "train.tsv")
    dev = read_sst2(args.glue / "SST-2" / "dev.tsv")
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "train.csv", make_pairs(train, args.train, args.seed))
    write_csv(args.out / "dev.csv", make_pairs(dev, args.dev, args.seed + 1))
    print(f"wrote {args.train} train and {args.dev} dev pairs to {args.out}")


if __name__ == "__main__":
    main()
