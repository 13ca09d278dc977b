"""Write ladc's embedded demo dataset: short, templated movie-review sentences in the GLUE SST-2 TSV layout.

The sentences are generated here from small word lists (no corpus is copied), with negation and contrast templates
so the task is not a bag-of-words lookup. Two things keep it from being solved outright, so the demo's report shows
what distillation and INT8 cost:
- dev-only words: 40 % of dev sentences use sentiment adjectives that never occur in train (`DEV_POSITIVE`,
  `DEV_NEGATIVE`); only what the model learned in pretraining says whether "superb" is good;
- annotator noise: 5 % of the labels in both splits are flipped at random, as in real crowd-labelled data, so no
  model can score much above 95 %.
Run from the repo root:

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
# adjectives that only dev sentences use (none of them is in POSITIVE or NEGATIVE)
DEV_POSITIVE = ["superb", "excellent", "fantastic", "terrific", "splendid", "marvelous", "stunning", "magnificent",
                "captivating", "inspired"]  # fmt: skip
DEV_NEGATIVE = ["dreadful", "mediocre", "bland", "clumsy", "forgettable", "tiresome", "awkward", "pointless",
                "dreary", "pathetic"]  # fmt: skip
DEV_ONLY_SHARE = 0.4  # of dev sentences
NOISE = 0.05  # share of labels flipped, both splits
TRAIN_ROWS, DEV_ROWS = 480, 200
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


def sentence(rng: random.Random, dev_only: bool = False) -> tuple[str, int]:
    """One sentence and its sentiment; `dev_only` draws the adjectives from the lists train never uses."""
    positives, negatives = (DEV_POSITIVE, DEV_NEGATIVE) if dev_only else (POSITIVE, NEGATIVE)
    template, negated = rng.choice(TEMPLATES)
    positive = rng.random() < 0.5
    adj = rng.choice(positives if positive else negatives)
    text = template.format(noun=rng.choice(NOUNS), adv=rng.choice(ADVERBS), adj=adj)
    label = int(positive != negated)
    if rng.random() < 0.25:  # contrast: the clause after "but" decides
        positive_tail = rng.random() < 0.5
        tail = rng.choice(positives if positive_tail else negatives)
        text = f"{text[:-2]} , but the {rng.choice(NOUNS)} is {tail} ."
        label = int(positive_tail)
    return text, label


def write_split(path: Path, count: int, rng: random.Random, seen: set[str], dev_only_share: float = 0.0) -> None:
    rows = []
    while len(rows) < count:
        text, label = sentence(rng, dev_only=rng.random() < dev_only_share)
        if text in seen:
            continue
        seen.add(text)
        if rng.random() < NOISE:
            label = 1 - label  # annotator noise
        rows.append(f"{text}\t{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> None:
    import sys

    args = sys.argv[1:] if argv is None else argv
    rng = random.Random(20231483)  # the paper's Sensors article number, for a fixed, citable seed
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "ladc" / "demo_data"
    root = root / "SST-2"
    seen: set[str] = set()
    write_split(root / "train.tsv", TRAIN_ROWS, rng, seen)
    write_split(root / "dev.tsv", DEV_ROWS, rng, seen, DEV_ONLY_SHARE)  # disjoint from train
    print(f"wrote {root}/train.tsv ({TRAIN_ROWS}) and dev.tsv ({DEV_ROWS})")


if __name__ == "__main__":
    main()
