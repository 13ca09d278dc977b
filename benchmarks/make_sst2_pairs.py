"""Sentence-pair tasks built from real SST-2 (issue 22), written as RTE-style CSV files ladc reads with `--task rte
--train-file ... --dev-file ... --text-fields sentence1,sentence2`. Two kinds:

- `sentiment`: two sentences, `entailment` when they share a sentiment and `not_entailment` when they do not. An XOR
  of two sentiments: the offline MiniLM teacher stays at chance on 4,000 such pairs at its defaults (RESULTS.md).
- `span` (the default): a sentence and a 3-7 word phrase, `entailment` when the phrase is a span of the sentence and
  `not_entailment` when it is not: half of the negatives are a span of another sentence, half the sentence's own span
  with one word swapped for a word of another sentence (a near miss, so word overlap alone does not decide it).

Both stand in for an entailment task we cannot ship: the model must encode both texts and compare them, which a
single-sentence classifier never does. Train pairs come from SST-2 train, dev pairs from SST-2 dev only.

Usage:
    python benchmarks/make_sst2_pairs.py --glue ../shared/glue --kind span --out runs/data/sst2-spans --train 4000
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


def _span(words: list[str], rng: random.Random) -> list[str]:
    length = rng.randint(3, min(7, len(words)))
    start = rng.randrange(len(words) - length + 1)
    return words[start : start + length]


def _contains(words: list[str], span: list[str]) -> bool:
    return f" {' '.join(span)} " in f" {' '.join(words)} "


def _negative(words: list[str], other: list[str], rng: random.Random) -> list[str]:
    """A phrase that is not a span of `words`: another sentence's span, or a span of `words` with one word swapped."""
    for _ in range(100):
        if rng.random() < 0.5:
            span = _span(other, rng)
        else:
            span = _span(words, rng)
            span[rng.randrange(len(span))] = rng.choice(other)
        if not _contains(words, span):
            return span
    raise RuntimeError(f"no negative phrase found for {' '.join(words)!r}")


def make_span_pairs(rows: list[tuple[str, int]], count: int, seed: int) -> list[tuple[str, str, str]]:
    """`count` (sentence, phrase) pairs, half with the phrase a span of the sentence, in random order (seeded)."""
    rng = random.Random(seed)
    sentences = [text.split() for text, _ in rows if len(text.split()) >= 8]
    pairs = []
    for index in range(count):
        words, other = rng.choice(sentences), rng.choice(sentences)
        positive = index % 2 == 0
        span = _span(words, rng) if positive else _negative(words, other, rng)
        pairs.append((" ".join(words), " ".join(span), "entailment" if positive else "not_entailment"))
    rng.shuffle(pairs)
    return pairs


KINDS = {"sentiment": make_pairs, "span": make_span_pairs}


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
    parser.add_argument("--kind", choices=sorted(KINDS), default="span")
    parser.add_argument("--out", type=Path, default=Path("runs/data/sst2-spans"))
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--dev", type=int, default=872)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train = read_sst2(args.glue / "SST-2" / "train.tsv")
    dev = read_sst2(args.glue / "SST-2" / "dev.tsv")
    args.out.mkdir(parents=True, exist_ok=True)
    make = KINDS[args.kind]
    write_csv(args.out / "train.csv", make(train, args.train, args.seed))
    write_csv(args.out / "dev.csv", make(dev, args.dev, args.seed + 1))
    print(f"wrote {args.train} train and {args.dev} dev {args.kind} pairs to {args.out}")


if __name__ == "__main__":
    main()
