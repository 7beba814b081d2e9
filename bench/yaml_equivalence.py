"""Every seed of a corpus loads the same through `yamlsafe.load` as through PyYAML alone.

    .venv/bin/python -m bench.yaml_equivalence [--count 100000] [--seeds DIR]

`yamlsafe.load` builds the plain shape of a document itself and leaves the rest to
PyYAML (see its docstring). This reads every seed's front matter and compares what
it gives, with the seeds' loader, against PyYAML's own construction of the same
text: the same values of the same types, or the same error. It also times both, in
one process, alternating halves of the corpus so both see the same machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from aggregator import yamlsafe
from aggregator.parse import SeedLoader, front_matter
from bench.common import corpus

Reference = type(
    "Reference",
    (getattr(yaml, "CSafeLoader", yaml.SafeLoader),),
    {"yaml_constructors": SeedLoader.yaml_constructors},
)


def outcome(text: str, ours: bool) -> tuple[str, str]:
    """repr of the value (types included), or the error, as one of the two loaders gives it."""
    try:
        value = yamlsafe.load(text, SeedLoader) if ours else yaml.load(text, Loader=Reference)
    except Exception as exc:  # noqa: BLE001 - the same error must come out of both
        return (type(exc).__name__, str(exc))
    return ("value", repr(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seeds", type=Path, help="a seed directory (default: a corpus)")
    args = parser.parse_args()
    seeds = args.seeds or corpus(args.count)
    texts = []
    for path in sorted(p for p in seeds.rglob("*") if p.is_file() and p.name[0] != "."):
        try:
            texts.append(front_matter(path.read_bytes()))
        except Exception:  # noqa: BLE001 - a file with no front matter has no YAML to compare
            continue
    differ = 0
    for text in texts:
        if outcome(text, True) != outcome(text, False):
            differ += 1
            if differ <= 5:
                print("differs:", text[:200].replace("\n", "\\n"))
    timings = {True: 0.0, False: 0.0}
    for ours in (False, True, True, False):
        start = time.process_time()
        for text in texts:
            outcome(text, ours)
        timings[ours] += time.process_time() - start
    per = {k: v / 2 / len(texts) * 1e6 for k, v in timings.items()}
    print(f"{len(texts):,} documents, {differ} differ")
    print(f"CPU per document: PyYAML alone {per[False]:.0f} µs, yamlsafe.load {per[True]:.0f} µs")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
