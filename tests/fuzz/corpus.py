"""The fixed corpus of known-nasty inputs: ``corpus/NAME.hex``, documented (with the
outcome each must get) one line each in ``corpus/README.md``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

Expected = Literal["ok", "rejected", "violation", "incomplete"]
OUTCOMES = ("ok", "rejected", "violation", "incomplete")
CORPUS_DIR = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Sample:
    name: str
    expected: Expected
    description: str
    data: bytes


def load_corpus() -> list[Sample]:
    samples = []
    for line in (CORPUS_DIR / "README.md").read_text().splitlines():
        name, sep, rest = line.partition(": ")
        expected, sep2, description = rest.partition(": ")
        if not (sep and sep2 and expected in OUTCOMES):
            continue
        data = bytes.fromhex("".join((CORPUS_DIR / f"{name}.hex").read_text().split()))
        samples.append(Sample(name, cast(Expected, expected), description, data))
    return samples


CORPUS = load_corpus()
