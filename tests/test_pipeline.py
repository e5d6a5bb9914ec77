"""The DVC pipeline for real: stage scripts and the real archive (the smoke `dvc repro` in a temp repo:
tests/test_team_server.py, which runs it once for both)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fer_pipeline.data import ingest
from fer_pipeline.params import STAGE_PARAMS
from fer_pipeline.validation import validate

from conftest import REAL_ARCHIVE, REPO
from helpers import repo_params, stage_cmd

ARCHIVE = REPO / "data/raw/fer2013.zip" if (REPO / "data/raw/fer2013.zip").exists() else REAL_ARCHIVE
VOTES = REPO / "data/raw/fer2013_ferplus_votes.csv"
VOTES = VOTES if VOTES.exists() else REAL_ARCHIVE.parent / "ferplus" / VOTES.name
needs_archive = pytest.mark.skipif(
    not ARCHIVE.exists() or not VOTES.exists(),
    reason=f"FER2013 archive or FER+ votes absent (looked for data/raw/ and {REAL_ARCHIVE.parent}); "
           "run `dvc pull` to get them")

TRUE_COUNTS = {
    "train": {"total": 28709, "angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965,
              "sad": 4830, "surprise": 3171},
}
TEST_FOLDER = {"angry": 958, "disgust": 111, "fear": 1024, "happy": 1774, "neutral": 1233, "sad": 1247,
               "surprise": 831}


def test_dvc_yaml_stages_and_params_sections_agree():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = repo_params()
    assert list(dvc["stages"]) == ["ingest", "validate", "preprocess", "train", "evaluate", "export", "photos"]
    for stage, spec in dvc["stages"].items():
        assert stage in params or stage == "photos"
        assert (REPO / "pipeline" / f"{stage}.py").exists()
        spec = spec.get("do", spec)  # photos: one stage per evaluate.photo_sets entry (foreach)
        assert sorted(spec["params"]) == sorted(STAGE_PARAMS[stage])
    # One metrics file of headline figures for the pipeline, in the evaluate stage's folder (the
    # other reports are plain outputs), and one per photo set.
    metrics = [next(iter(m)) for s in dvc["stages"].values() for m in s.get("do", s).get("metrics", [])]
    assert dvc["metrics"] == ["reports/evaluate/metrics.json"]
    assert metrics == ["reports/photos/${item.name}/metrics.json"]
    assert params["evaluate"]["photo_sets"] == []     # off by default


def full_params(**sections) -> str:
    """The repository's params.yaml with some sections replaced (stages check the whole file)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(sections)
    return yaml.safe_dump(raw, sort_keys=False)


@pytest.mark.parametrize("edit,message", [
    (lambda p: p["train"].__setitem__("modle", {"name": "vgg16"}),
     "error: params.yaml: train.modle: unknown key; did you mean train.model?"),
    (lambda p: p["preprocess"]["augment"].__setitem__("flipp", False),
     "error: params.yaml: preprocess.augment.flipp: unknown key; did you mean preprocess.augment.flip?"),
    (lambda p: p["train"].__setitem__("epochs", "twenty"),
     "error: params.yaml: train.epochs: input should be a valid integer, got 'twenty'"),
    (lambda p: p["preprocess"]["augment"].__setitem__("rotation", 2.0),
     "error: params.yaml: preprocess.augment.rotation: input should be less than or equal to 0.5, got 2.0"),
    (lambda p: p["evaluate"].pop("promote_alpha"),
     "error: params.yaml: evaluate.promote_alpha: missing key"),
    (lambda p: p["train"].__setitem__("labels", "ferplus"),
     "error: params.yaml: train.labels: input should be 'fer2013', 'ferplus_majority', 'ferplus_soft' or "
     "'fused', got 'ferplus'"),
    (lambda p: p["train"]["progressive"].__setitem__("epochs", 22),
     "error: params.yaml: train: progressive.epochs (22) must be below epochs (22)"),
])
def test_a_bad_parameter_stops_a_stage_before_any_work_with_one_line(tmp_path, edit, message):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(raw)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    # train, although the mistake may sit in another stage's section: the whole file is checked.
    r = subprocess.run(stage_cmd("train"), cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith(("I0000", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no output touched


@pytest.mark.parametrize("args,message", [
    ([], "error: pipeline/export.py: missing model=PATH data=PATH tflite=PATH reports=PATH (dvc.yaml's cmd gives "
         "them: run `dvc repro export`)"),
    (["model=m.keras", "data=d", "tflite=t.tflite"], "error: pipeline/export.py: missing reports=PATH"),
    (["model=m.keras", "data=d", "tflite=t.tflite", "reports=r", "modle=x"],
     "error: pipeline/export.py: unknown argument modle; it takes model=PATH data=PATH tflite=PATH reports=PATH"),
])
def test_a_stage_takes_exactly_the_paths_its_dvc_yaml_cmd_gives(tmp_path, args, message):
    (tmp_path / "params.yaml").write_text(full_params())
    r = subprocess.run([sys.executable, str(REPO / "pipeline/export.py"), *args], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith(("I0000", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_ctrl_c_stops_a_stage_with_one_line_and_exit_status_130(tmp_path):
    import signal

    (tmp_path / "params.yaml").write_text(full_params())
    (tmp_path / "slow.py").write_text(
        "import time\n"
        "from fer_pipeline.stage import run_stage\n"
        "def export(params, *, model, data, tflite, report):\n"
        "    print('working', flush=True)\n"
        "    time.sleep(60)\n"
        "run_stage('export', export)\n")
    # SIGINT back to its default first, as in a terminal: a shell's background job (`./test.sh &`)
    # starts with SIGINT ignored, which the child would inherit, and Python then never raises
    # KeyboardInterrupt (the test hung 30 s that way).
    p = subprocess.Popen([sys.executable, "slow.py", "model=m", "data=d", "tflite=t", "report=r"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.stdout.readline() == "working\n"  # inside the stage's work, as a user's Ctrl-C would be
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130
    assert err == "interrupted: no partial outputs were written\n"


def test_stage_scripts_import_the_package_of_their_own_copy(tmp_path):
    # A `dvc exp run --temp` or queued experiment runs in a copy of the repo while the venv's
    # editable install points at the original: the stage must still run its copy's code.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(REPO / "pipeline", copy / "pipeline", symlinks=True)
    shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (copy / "pipeline" / "where.py").write_text("import fer_pipeline\nprint(fer_pipeline.__file__)\n")
    out = subprocess.run([sys.executable, "pipeline/where.py"], cwd=copy, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert Path(out).resolve() == (copy / "src" / "fer_pipeline" / "__init__.py").resolve()


def test_validate_stage_exits_non_zero_with_one_line_on_hard_failure(fer_fixture, tmp_path, tiny_validate_cfg):
    work = tmp_path / "w"
    (work / "reports").mkdir(parents=True)
    from fer_pipeline.data import ingest_to

    ingest_to(str(fer_fixture.zip), str(work / "data/interim"), str(work / "reports/ingest/summary.json"), workers=1)
    bad = {**tiny_validate_cfg, "class_share_range": [0.5, 0.6]}
    (work / "params.yaml").write_text(full_params(validate=bad))
    r = subprocess.run(stage_cmd("validate"), cwd=work, capture_output=True, text=True)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: validation failed:")
    assert json.loads((work / "reports/validate/metrics.json").read_text())["success"] is False


def test_ingest_stage_reports_a_missing_archive_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(full_params(
        ingest={"input": "data/raw/fer2013.zip", "votes": "data/raw/fer2013_ferplus_votes.csv",
                "max_per_class": 0, "seed": 0, "workers": 1}))
    r = subprocess.run(stage_cmd("ingest"), cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: input not found: data/raw/fer2013.zip; get it with `dvc pull`")
    assert "Traceback" not in r.stderr and not (tmp_path / "data/interim").exists()


@pytest.mark.slow
def test_ingest_and_preprocess_twice_give_identical_bytes(fer_fixture, tmp_path, tiny_validate_cfg):
    # DVC hashes these outputs: a rerun with the same inputs must not change them (numpy's savez
    # stamps zip entries 1980-01-01; parquet and JSON carry no time either).
    hashes = []
    for run in ("a", "b"):
        work = tmp_path / run
        work.mkdir()
        (work / "params.yaml").write_text(full_params(
            ingest={"input": str(fer_fixture.zip), "votes": str(fer_fixture.votes_csv), "max_per_class": 0,
                    "seed": 0, "workers": 1},
            validate=tiny_validate_cfg))
        for stage in ("ingest", "validate", "preprocess"):
            subprocess.run(stage_cmd(stage), cwd=work, check=True, capture_output=True)
        files = sorted(p for d in ("data", "reports") for p in (work / d).rglob("*") if p.is_file())
        hashes.append({str(p.relative_to(work)): p.read_bytes() for p in files})
    assert set(hashes[0]) >= {"data/processed/train.npz", "data/interim/manifest.parquet",
                              "reports/preprocess/summary.json"}
    assert hashes[0] == hashes[1]


@needs_archive
def test_real_archive_ingest_and_validate_give_the_true_counts():
    images, manifest, report = ingest(ARCHIVE, progress=False, votes=VOTES)
    summary = validate(images, manifest, repo_params()["validate"], report.summary())
    assert summary["success"], [c for c in summary["checks"] if not c["success"]]
    counts = summary["counts"]
    assert counts["train"] == TRUE_COUNTS["train"]
    assert counts["val"]["total"] == 3589 and counts["test"]["total"] == 3589
    for name, n in TEST_FOLDER.items():
        assert counts["val"][name] + counts["test"][name] == n, name
    assert report.summary()["skipped_total"] == 0
    soft = summary["soft"]
    assert soft["duplicates_within_split"]["count"] > 1000 and soft["duplicates_across_splits"]["count"] > 0
    assert soft["near_blank"]["count"] > 0
    # FER+: 175 images without votes (shared/data/ferplus/README.md), and the most-voted counts and
    # agreement with FER2013's labels that README gives per split
    assert report.ferplus["without_votes"]["count"] == 175
    fp = summary["ferplus"]
    assert [fp[s]["with_most_voted"] for s in ("train", "val", "test")] == [26777, 3372, 3349]
    agree = [round(fp[s]["fer2013_agrees_with_most_voted"], 3) for s in ("train", "val", "test")]
    assert agree == [0.658, 0.654, 0.656]
