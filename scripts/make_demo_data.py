"""Write ladc's embedded demo dataset: short, templated movie-review sentences in the GLUE SST-2 TSV layout.

The sentences are generated here from small word lists (no corpus is copied), with negation and contrast templates
so the task is not a bag-of-words lookup. Run from the repo root:

    python scripts/make_demo_data.py            # writes ladc/demo_data/SST-2/{train,dev}.tsv
"""

from __future__ import annotations

import random
from pathlib import Path

POSITIVE = [
    "good",
    "great",
    "wonderful",
    "funny",
    "moving",
    "clever",
    "charming",
    "beautiful",
    "brilliant",
    "fresh",
    "delightful",
    "smart",
    "warm",
    "gripping",
    "lovely",
    "powerful",
    "enjoyable",
    "touching",
    "sharp",
    "fine",
]
NEGATIVE = [
    "bad",
    "boring",
    "dull",
    "awful",
    "weak",
    "stupid",
    "tedious",
    "messy",
    "silly",
    "flat",
    "painful",
    "lazy",
    "ugly",
    "terrible",
    "poor",
    "slow",
    "empty",
    "cheap",
    "tired",
    "horrible",
]
NOUNS = [
    "movie",
    "film",
    "story",
    "script",
    "cast",
    "plot",
    "ending",
    "director",
    "acting",
    "music",
    "dialogue",
    "picture",
    "performance",
    "comedy",
    "drama",
    "lead",
    "camera work",
    "soundtrack",
    "finale",
    "premise",
]
ADVERBS = ["very", "really", "quite", "truly", "rather", "so", "pretty", "genuinely", "surprisingly", "often"]
TEMPLATES = [
    ("the {noun} is {adv} {adj} .", False),
    ("a {adj} {noun} .", False),
    ("this {noun} was {adj} from start to finish .", False),
    ("i found the {noun} {adv} {adj} .", False),
    ("the {noun} is not {adj} .", True),
    ("the {noun} was never {adj} .", True),
    ("nobody would call this {noun} {adj} .", True),
    ("it is hard to say the {noun} is {adj} .", True),
]


def sentence(rng: random.Random) -> tuple[str, int]:
    template, negated = rng.choice(TEMPLATES)
    positive = rng.random() < 0.5
    adj = rng.choice(POSITIVE if positive else NEGATIVE)
    text = template.format(noun=rng.choice(NOUNS), adv=rng.choice(ADVERBS), adj=adj)
    label = int(positive != negated)
    if rng.random() < 0.25:  # contrast: the clause after "but" decides
        positive_tail = rng.random() < 0.5
        tail = rng.choice(POSITIVE if positive_tail else NEGATIVE)
        text = f"{text[:-2]} , but the {rng.choice(NOUNS)} is {tail} ."
        label = int(positive_tail)
    return text, label


def write_split(path: Path, count: int, rng: random.Random, seen: set[str]) -> None:
    rows = []
    while len(rows) < count:
        text, label = sentence(rng)
        if text in seen:
            continue
        seen.add(text)
        rows.append(f"{text}\t{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")


def main() -> None:
    rng = random.Random(20231483)  # the paper's Sensors article number, for a fixed, citable seed
    root = Path(__file__).resolve().parents[1] / "ladc" / "demo_data" / "SST-2"
    seen: set[str] = set()
    write_split(root / "train.tsv", 480, rng, seen)
    write_split(root / "dev.tsv", 160, rng, seen)  # disjoint from train
    print(f"wrote {root}/train.tsv (480) and dev.tsv (160)")


if __name__ == "__main__":
    main()
