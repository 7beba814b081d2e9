"""Every seed of a corpus loads the same through `yamlsafe.load` as through PyYAML alone.

    .venv/bin/python -m bench.yaml_equivalence [--count 100000] [--seeds DIR]

`yamlsafe.load` reads documents of the seeds' plain block style with rapidyaml,
builds the plain shape of the others itself from libyaml's nodes, and leaves the
rest to PyYAML (see its docstring). This reads every seed's front matter and
compares what it gives, with the seeds' loader, against PyYAML's own construction
of the same text: the same values of the same types, or the same error. It says
how many documents rapidyaml read, and times PyYAML alone, `yamlsafe.load` with
libyaml only, and `yamlsafe.load`, in one process, in alternating rounds so all
see the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from unittest import mock

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
    parser.add_argument("--rounds", type=int, default=1, help="timing rounds (each one both ways)")
    args = parser.parse_args()
    yamlsafe.read_fast_here()  # as the parse workers do
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
    fast = sum(yamlsafe.reads_fast(text, SeedLoader) for text in texts)
    names = ("PyYAML alone", "yamlsafe.load, libyaml only", "yamlsafe.load")
    timings = dict.fromkeys(names, 0.0)
    for _ in range(args.rounds):
        for name in (*names, *reversed(names)):
            libyaml_only = mock.patch.object(yamlsafe, "ryml", None)
            with libyaml_only if name == names[1] else contextlib.nullcontext():
                start = time.process_time()
                for text in texts:
                    with contextlib.suppress(Exception):
                        if name == names[0]:
                            yaml.load(text, Loader=Reference)
                        else:
                            yamlsafe.load(text, SeedLoader)
                timings[name] += time.process_time() - start
    print(f"{len(texts):,} documents, {differ} differ, {fast:,} read by rapidyaml")
    print(
        "CPU per document: "
        + ", ".join(
            f"{name} {t / 2 / args.rounds / len(texts) * 1e6:.0f} µs" for name, t in timings.items()
        )
    )
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
