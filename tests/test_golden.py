"""The bundled seeds render to the committed expected output, byte for byte.

After an intended change to the output, regenerate with
`AGGREGATOR_UPDATE_GOLDEN=1 pytest tests/test_golden.py` and review the diff.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from aggregator.app import make_app
from aggregator.config import load_config
from tests.conftest import NOW
from tests.feedcheck import check_feed

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden" / "bundled"


def test_bundled_seeds_match_the_golden_output(tmp_path: Path) -> None:
    config = load_config(
        ROOT / "config" / "aggregator.yaml",
        overrides={
            "seeds.dir": ROOT / "seeds",
            "output.dir": tmp_path / "out",
            "state.path": tmp_path / "state.sqlite3",
        },
        environ={},
    )
    with make_app(config) as app:
        report = app.build(NOW)
    assert report.rejected == [] and report.scan.warnings == []
    produced = {
        p.relative_to(tmp_path / "out").as_posix(): p.read_bytes()
        for p in sorted((tmp_path / "out").rglob("*"))
        if p.is_file()
    }
    if os.environ.get("AGGREGATOR_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name, data in produced.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
    expected = {
        p.relative_to(GOLDEN).as_posix(): p.read_bytes()
        for p in sorted(GOLDEN.rglob("*"))
        if p.is_file()
    }
    assert sorted(produced) == sorted(expected)
    for name, data in produced.items():
        assert data == expected[name], f"{name} differs from tests/golden/bundled/{name}"
        if name.endswith(".atom"):
            check_feed(data)
