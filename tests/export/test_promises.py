"""The export's promises (tests/test_promises.py holds the others): it replaces only its own
files, refuses a folder that holds no export, and writes report.json last."""

import json

import pytest

from kws.export import ExportError
from kws.export.pipeline import ARTIFACTS, REPORT, staging_folder


def test_export_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "export"
    (out / "src").mkdir(parents=True)
    (out / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (out / REPORT).write_text("{}")
    (out / "notes.txt").write_text("mine")
    (out / "mfcc_frontend_tables.h").write_text("an earlier model's front end")
    with staging_folder(out) as folder:
        for name in (*ARTIFACTS, "micro_frontend_tables.h", REPORT):
            (folder / name).write_text(f"new {name}")
    assert (out / "src" / "main.c").read_text().startswith("int main") and (out / "notes.txt").read_text() == "mine"
    # the tables of the new model's front end only: the earlier model's would mislead a build
    assert (out / "micro_frontend_tables.h").read_text() == "new micro_frontend_tables.h"
    assert not (out / "mfcc_frontend_tables.h").exists()
    assert (out / REPORT).read_text() == f"new {REPORT}" and all(
        (out / name).read_text() == f"new {name}" for name in ARTIFACTS
    )
    with pytest.raises(RuntimeError, match="verification failed"):
        with staging_folder(out) as folder:
            (folder / "model.onnx").write_text("half")
            raise RuntimeError("verification failed")
    assert (out / "model.onnx").read_text() == "new model.onnx" and (out / "notes.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_export_refuses_a_folder_that_holds_no_export(tmp_path):
    (tmp_path / "home" / "thesis.tex").parent.mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("...")
    with pytest.raises(ExportError, match="not an earlier export"):
        with staging_folder(tmp_path / "home"):
            pass
    assert (tmp_path / "home" / "thesis.tex").exists()


def test_report_json_is_written_last(tmp_path):
    """An export interrupted while its files move has no report.json: it never claims to be whole."""
    out = tmp_path / "export"
    out.mkdir()
    (out / REPORT).write_text(json.dumps({"old": True}))
    with pytest.raises(FileNotFoundError):
        with staging_folder(out) as folder:
            for name in ARTIFACTS[:3]:  # the others are missing: the move stops half-way
                (folder / name).write_text("x")
            (folder / REPORT).write_text("{}")
    assert not (out / REPORT).exists()
