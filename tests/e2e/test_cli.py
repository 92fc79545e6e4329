"""The `keel` command line, end to end, on real workspaces in temporary folders.

Most tests read one workspace built once per module (two dataset versions, two tracked runs,
two registered model versions with a champion). Tests that write use their own workspace or
their own model name, so the order of the tests does not matter.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json
from typer.testing import CliRunner

import keel
from keel import Settings
from keel.cli import app
from keel.storage import BlobStore

runner = CliRunner()
KEEL = Path(sys.executable).with_name("keel")  # the console script of this virtualenv


# -- a shared workspace --------------------------------------------------------------------
def credit_frame(n: int, seed: int, *, income_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.normal(100 + income_shift, 20, n).round(1)
    age = rng.integers(18, 70, n)
    home = rng.choice(["rent", "owner", "parents"], n)
    risk = -0.04 * (income - 100) + 0.8 * (home == "rent") + rng.normal(0, 1, n)
    return pd.DataFrame({"income": income, "age": age, "home": home, "status": np.where(risk > 0.4, "bad", "good")})


def fit_model(X: pd.DataFrame, y: pd.Series, C: float) -> object:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer([("home", OneHotEncoder(handle_unknown="ignore"), ["home"])], remainder="passthrough")
    return make_pipeline(encode, LogisticRegression(C=C, max_iter=500)).fit(X, y)


@dataclass(frozen=True)
class Shared:
    home: Path
    files: Path  # input files for predict
    run_ids: tuple[str, ...]  # runs 1 and 2, in training order
    rows: int  # rows of the predict input files


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    from sklearn.metrics import roc_auc_score

    root = tmp_path_factory.mktemp("cli")
    home, files = root / "ws", root / "files"
    files.mkdir()
    first, second = credit_frame(300, 0), credit_frame(360, 1, income_shift=25.0)
    second["debt"] = np.arange(len(second)) % 7
    first.to_csv(files / "credit-1.csv", index=False)
    second.to_csv(files / "credit-2.csv", index=False)

    run_ids = []
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        v1 = ws.datasets.add("credit", files / "credit-1.csv", description="first export")
        ws.datasets.add("credit", files / "credit-2.csv", description="second export")
        frame = ws.datasets.load(v1)
        X, y = frame.drop(columns="status"), frame["status"]
        for C in (0.001, 1.0):
            with ws.runs.start("credit", params={"C": C}) as run:
                run.log_input(v1)
                model = fit_model(X, y, C)
                run.log_metric("auc", roc_auc_score(y == "bad", model.predict_proba(X)[:, 0]))  # type: ignore[attr-defined]
                for step, loss in enumerate((0.9, 0.7, 0.6)):
                    run.log_metric("loss", loss, step=step)
            ws.models.register("credit-risk", model, run=run, X=X)
            run_ids.append(run.id)
        ws.models.set_alias("credit-risk", "champion", version=1, reason="first")
        ws.models.set_alias("credit-risk", "champion", version=2, reason="better auc")
        for C in (0.5, 2.0):  # a model of its own for the alias-writing tests
            ws.models.register("scratch", fit_model(X, y, C), X=X)

    inputs = credit_frame(7, 2).drop(columns="status")
    inputs.to_csv(files / "applications.csv", index=False)
    inputs.to_csv(files / "applications.tsv", index=False, sep="\t")
    inputs.to_parquet(files / "applications.parquet")
    (files / "applications.json").write_text(inputs.to_json(orient="records"))
    (files / "applications.jsonl").write_text(inputs.to_json(orient="records", lines=True))
    inputs.rename(columns={"income": "salary"}).to_csv(files / "wrong-columns.csv", index=False)
    (files / "broken.json").write_text('{"records": [{"income": 1,')
    return Shared(home, files, tuple(run_ids), len(inputs))


# -- help, init, missing workspace ---------------------------------------------------------
def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "data", "runs", "models", "gc", "demo", "--workspace"):
        assert command in result.stdout
    models_help = runner.invoke(app, ["models", "--help"]).stdout
    for command in ("list", "show", "alias", "history", "predict"):
        assert command in models_help


def test_group_without_a_command_prints_its_help() -> None:
    result = runner.invoke(app, ["data"])
    assert "add" in result.stdout and "diff" in result.stdout
    assert "Traceback" not in result.output


def test_version_option_prints_the_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"keel {keel.__version__}"


def test_init_creates_the_workspace_and_says_where_it_is(tmp_path: Path) -> None:
    home = tmp_path / "new"
    code, out, err = keel_cli(home, "init")
    assert code == 0, err
    assert (home / "keel.db").is_file()
    assert str(home) in out and "artifacts" in out
    info = keel_json(home, "init")  # running it again upgrades nothing and keeps the store
    assert isinstance(info, dict)
    assert info["store"] == f"sqlite:///{home / 'keel.db'}"
    assert info["artifacts"] == str(home / "artifacts")
    assert info["schema_revision"]


def test_workspace_defaults_to_keel_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "from-env"))
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "from-env" / "keel.db").is_file()


def test_read_command_without_a_workspace_says_how_to_create_one(tmp_path: Path) -> None:
    home = tmp_path / "nothing-here"
    code, out, err = keel_cli(home, "data", "list")
    assert_one_line_error((code, out, err), code=1, contains="keel init")
    assert not home.exists()  # a read in the wrong folder leaves no .keel behind


def test_broken_setting_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_SERVER_PORT", "80a")
    code, out, err = keel_cli(tmp_path, "init")
    assert_one_line_error((code, out, err), code=1, contains="KEEL_SERVER_PORT='80a'")


# -- data ----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_data_add_reads_each_table_format(tmp_path: Path, suffix: str) -> None:
    frame = credit_frame(50, 3)
    path = tmp_path / f"credit{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    added = keel_json(tmp_path / "ws", "data", "add", "credit", str(path))
    assert isinstance(added, dict)
    assert added["ref"] == "credit@1"
    assert added["num_rows"] == 50
    assert [c["name"] for c in added["columns"]] == ["income", "age", "home", "status"]


def test_data_add_then_list_and_show(tmp_path: Path) -> None:
    home, path = tmp_path / "ws", tmp_path / "credit.csv"
    credit_frame(120, 4).to_csv(path, index=False)
    code, out, err = keel_cli(
        home,
        "data",
        "add",
        "credit",
        str(path),
        "--description",
        "March export",
        "--tag",
        "source=crm",
        "-t",
        "owner=risk",
    )
    assert code == 0, err
    assert "Added credit@1" in out and "120 rows" in out and "sha256:" in out

    code, out, _ = keel_cli(home, "data", "add", "credit", str(path))  # same bytes: same version
    assert code == 0 and "Unchanged: credit@1" in out

    listed = keel_json(home, "data", "list")
    assert isinstance(listed, list)
    assert [(d["name"], d["latest_version"], d["num_versions"]) for d in listed] == [("credit", 1, 1)]
    assert listed[0]["description"] == "March export"

    shown = keel_json(home, "data", "show", "credit@1")
    assert isinstance(shown, dict)
    assert shown["tags"] == {"source": "crm", "owner": "risk"}
    assert shown["digest"].startswith("sha256:") and shown["num_rows"] == 120
    assert shown["profile"]["columns"]["home"]["kind"] == "categorical"
    assert "T" in shown["created_at"]  # ISO 8601

    code, out, _ = keel_cli(home, "data", "show", "credit")
    assert code == 0
    for text in ("credit@1", "income", "home", "3 values", "source=crm"):
        assert text in out


def test_data_add_folder_of_files(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "a.txt").write_text("a")
    (folder / "b.txt").write_text("bb")
    code, out, err = keel_cli(tmp_path / "ws", "data", "add", "images", str(folder))
    assert code == 0, err
    assert "images@1" in out and "2 files" in out
    code, out, _ = keel_cli(tmp_path / "ws", "data", "show", "images")
    assert code == 0 and ".txt (2)" in out


def test_data_show_accepts_a_hash_prefix(shared: Shared) -> None:
    first = keel_json(shared.home, "data", "show", "credit@1")
    assert isinstance(first, dict)
    prefix = first["digest"].removeprefix("sha256:")[:10]
    by_hash = keel_json(shared.home, "data", "show", f"credit@{prefix}")
    assert isinstance(by_hash, dict) and by_hash["version"] == 1
    assert first["models"] == ["credit-risk@1", "credit-risk@2"]


def test_data_diff_reports_schema_rows_and_shift(shared: Shared) -> None:
    diff = keel_json(shared.home, "data", "diff", "credit@1", "credit@2")
    assert isinstance(diff, dict)
    assert diff["added_columns"] == ["debt"] and diff["removed_columns"] == []
    assert (diff["rows_a"], diff["rows_b"], diff["rows_delta"]) == (300, 360, 60)
    income = next(c for c in diff["columns"] if c["name"] == "income")
    assert income["statistic"] == "psi" and income["value"] > 0.2  # the income shift shows

    code, out, _ = keel_cli(shared.home, "data", "diff", "credit@1", "credit@2")
    assert code == 0
    assert "added columns" in out and "debt" in out and "+60" in out and "yes" in out


# -- runs ----------------------------------------------------------------------------------
def test_runs_list_newest_first_with_limit_and_experiment(shared: Shared) -> None:
    runs = keel_json(shared.home, "runs", "list")
    assert isinstance(runs, list)
    assert [r["id"] for r in runs] == list(reversed(shared.run_ids))
    assert runs[0]["status"] == "finished" and runs[0]["inputs"] == ["credit@1"]
    assert len(keel_json(shared.home, "runs", "list", "--limit", "1")) == 1  # type: ignore[arg-type]
    assert keel_json(shared.home, "runs", "list", "--experiment", "other") == []

    code, out, _ = keel_cli(shared.home, "runs", "list")
    assert code == 0
    assert shared.run_ids[0][:8] in out and "auc" in out and "finished" in out


def test_runs_show_by_id_prefix(shared: Shared) -> None:
    run_id = shared.run_ids[1]
    run = keel_json(shared.home, "runs", "show", run_id[:8])
    assert isinstance(run, dict)
    assert run["id"] == run_id
    assert run["params"] == {"C": "1.0"}
    assert run["metric_points"] == {"auc": 1, "loss": 3}
    assert run["metrics"]["loss"] == 0.6  # the latest point of the series

    code, out, _ = keel_cli(shared.home, "runs", "show", run_id)
    assert code == 0
    for text in ("Params", "Metrics", "credit@1", "loss"):
        assert text in out


def test_runs_search_filters_and_orders(shared: Shared) -> None:
    best_first = keel_json(shared.home, "runs", "search", "metrics.auc > 0", "--order-by", "metrics.auc desc")
    assert isinstance(best_first, list) and len(best_first) == 2
    assert best_first[0]["metrics"]["auc"] >= best_first[1]["metrics"]["auc"]
    only = keel_json(shared.home, "runs", "search", "params.C = 1.0")
    assert isinstance(only, list)
    assert [r["id"] for r in only] == [shared.run_ids[1]]
    code, out, _ = keel_cli(shared.home, "runs", "search", "metrics.auc > 2")
    assert code == 0 and "No runs match" in out


# -- models --------------------------------------------------------------------------------
def test_models_list(shared: Shared) -> None:
    models = keel_json(shared.home, "models", "list")
    assert isinstance(models, list)
    credit = next(m for m in models if m["name"] == "credit-risk")
    assert credit["aliases"] == {"champion": 2} and credit["num_versions"] == 2
    code, out, _ = keel_cli(shared.home, "models", "list")
    assert code == 0 and "champion -> @2" in out and "scratch" in out


def test_models_show_versions_aliases_and_lineage(shared: Shared) -> None:
    shown = keel_json(shared.home, "models", "show", "credit-risk")
    assert isinstance(shown, dict)
    assert shown["aliases"] == {"champion": 2}
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert [v["aliases"] for v in shown["versions"]] == [[], ["champion"]]
    lineage = shown["versions"][1]["lineage"]
    assert lineage["run_id"] == shared.run_ids[1] and lineage["experiment"] == "credit"
    assert lineage["datasets"] == ["credit@1"] and lineage["dataset_digests"][0].startswith("sha256:")

    code, out, _ = keel_cli(shared.home, "models", "show", "credit-risk")
    assert code == 0
    for text in ("champion -> credit-risk@2", shared.run_ids[0][:8], "credit@1", "auc"):
        assert text in out


def test_models_show_one_version_by_alias(shared: Shared) -> None:
    version = keel_json(shared.home, "models", "show", "credit-risk@champion")
    assert isinstance(version, dict)
    assert version["ref"] == "credit-risk@2"
    assert [c["name"] for c in version["signature"]["inputs"]] == ["income", "age", "home"]
    assert version["lineage"]["datasets"] == ["credit@1"]
    code, out, _ = keel_cli(shared.home, "models", "show", "credit-risk@1")
    assert code == 0
    assert "credit-risk@1" in out and "signature" in out and "income" in out and shared.run_ids[0] in out


def test_models_alias_moves_the_alias_and_history_records_it(shared: Shared) -> None:
    code, out, err = keel_cli(shared.home, "models", "alias", "scratch", "staging", "1", "--reason", "first try")
    assert code == 0, err
    assert "new alias" in out
    code, out, _ = keel_cli(shared.home, "models", "alias", "scratch", "staging", "2", "-r", "retrained")
    assert code == 0 and "scratch@1 -> scratch@2" in out
    assert keel_json(shared.home, "models", "show", "scratch@staging")["version"] == 2  # type: ignore[index]

    events = keel_json(shared.home, "models", "history", "scratch", "--alias", "staging")
    assert isinstance(events, list)
    assert [(e["from_version"], e["to_version"], e["reason"]) for e in events] == [
        (None, 1, "first try"),
        (1, 2, "retrained"),
    ]
    code, out, _ = keel_cli(shared.home, "models", "history", "credit-risk")
    assert code == 0 and "better auc" in out and "champion" in out


@pytest.mark.parametrize(
    "name", ["applications.csv", "applications.tsv", "applications.parquet", "applications.json", "applications.jsonl"]
)
def test_models_predict_reads_each_input_format(shared: Shared, name: str) -> None:
    result = keel_json(shared.home, "models", "predict", "credit-risk@champion", str(shared.files / name))
    assert isinstance(result, dict)
    assert result["model"] == "credit-risk@2"
    predictions = result["predictions"]
    assert len(predictions) == shared.rows
    for p in predictions:
        assert p["prediction"] in ("bad", "good")
        assert p["proba_bad"] + p["proba_good"] == pytest.approx(1.0)


def test_models_predict_prints_a_table_and_writes_output(shared: Shared, tmp_path: Path) -> None:
    source = str(shared.files / "applications.csv")
    code, out, err = keel_cli(shared.home, "models", "predict", "credit-risk@champion", source)
    assert code == 0, err
    assert "credit-risk@2 (credit-risk@champion)" in out and "prediction" in out and "bad" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1 ", "7 "))]) == 2

    target = tmp_path / "out.csv"
    code, out, _ = keel_cli(shared.home, "models", "predict", "credit-risk@1", source, "--output", str(target))
    assert code == 0 and f"Wrote {shared.rows} predictions of credit-risk@1" in out
    written = pd.read_csv(target)
    assert list(written.columns) == ["prediction", "proba_bad", "proba_good"] and len(written) == shared.rows


def test_gc_deletes_only_unreferenced_artifacts(tmp_path: Path) -> None:
    home, path = tmp_path / "ws", tmp_path / "credit.csv"
    credit_frame(40, 5).to_csv(path, index=False)
    assert keel_cli(home, "data", "add", "credit", str(path))[0] == 0
    blobs = BlobStore(str(home / "artifacts"))
    orphan = blobs.put_bytes(b"left behind by a crashed write")

    young = keel_json(home, "gc", "--dry-run")  # default grace period: the orphan is too young
    assert isinstance(young, dict) and young["deleted"] == [] and young["kept_young"] == 1

    planned = keel_json(home, "gc", "--dry-run", "--grace-s", "0")
    assert isinstance(planned, dict)
    assert planned["deleted"] == [orphan] and planned["dry_run"] is True
    assert blobs.exists(orphan)

    code, out, _ = keel_cli(home, "gc", "--grace-s", "0")
    assert code == 0 and "Deleted 1 unreferenced artifact" in out
    assert not blobs.exists(orphan)
    assert keel_cli(home, "data", "show", "credit")[0] == 0  # referenced content survives


# -- mistakes: one line, non-zero exit, no traceback ---------------------------------------
ERRORS = [
    (["data", "show", "debit"], 1, "No dataset named 'debit'"),
    (["data", "show", "credit@9"], 1, "no version 9"),
    (["data", "show", "credit@"], 1, "nothing after '@'"),
    (["data", "show", "cr edit"], 1, "Invalid name"),
    (["data", "diff", "credit@1", "nothing@1"], 1, "No dataset named 'nothing'"),
    (["models", "show", "credit-rsk"], 1, "Did you mean 'credit-risk'?"),
    (["models", "show", "credit-risk@champoin"], 1, "Did you mean 'champion'?"),
    (["models", "show", "credit-risk@7"], 1, "no version 7"),
    (["models", "history", "nobody"], 1, "No model named 'nobody'"),
    (["models", "alias", "credit-risk", "champion", "9"], 1, "no version 9"),
    (["models", "alias", "credit-risk", "latest", "1"], 1, "cannot be an alias"),
    (["models", "alias", "credit-risk", "champion", "two"], 2, "'version'"),
    (["models", "predict", "credit-risk@champion", "FILES/missing.csv"], 2, "does not exist"),
    (
        ["models", "predict", "credit-risk@champion", "FILES/wrong-columns.csv", "--no-drop-extra"],
        1,
        "missing column income; unexpected column salary",
    ),
    (["models", "predict", "credit-risk@champion", "FILES/broken.json"], 1, "Cannot read"),
    (["models", "predict", "credit-risk@gone", "FILES/applications.csv"], 1, "no alias 'gone'"),
    (["models", "predict", "credit-risk@champion", "FILES/applications.csv", "-o", "out.xlsx"], 2, "--output"),
    (
        ["models", "predict", "credit-risk@champion", "FILES/credit-1.csv", "--no-drop-extra"],
        1,
        "unexpected column status",
    ),
    (["runs", "show", "0123456789abcdef"], 1, "No run"),
    (["runs", "search", "metrics.auc >> 1"], 1, "Expected a value after metrics.auc"),
    (["runs", "list", "--limit", "0"], 2, "--limit"),
    (["data", "add", "credit"], 2, "Missing argument"),
    (["data", "add", "credit", "FILES/credit-1.csv", "--tag", "novalue"], 2, "KEY=VALUE"),
    (["fly"], 2, "No such command 'fly'"),
]


@pytest.mark.parametrize(("args", "expected_code", "contains"), ERRORS, ids=[" ".join(e[0]) for e in ERRORS])
def test_mistakes_print_one_line_and_exit_non_zero(
    shared: Shared, args: list[str], expected_code: int, contains: str
) -> None:
    args = [a.replace("FILES", str(shared.files)) for a in args]
    code, out, err = keel_cli(shared.home, *args)
    assert_one_line_error((code, out, err), code=expected_code, contains=contains)


def test_installed_script_exits_non_zero_without_a_traceback(shared: Shared) -> None:
    assert KEEL.is_file(), f"console script missing: {KEEL} (pip install -e .)"
    done = subprocess.run(
        [str(KEEL), "--workspace", str(shared.home), "models", "show", "credit-rsk"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == ["error: No model named 'credit-rsk'. Did you mean 'credit-risk'?"]

    done = subprocess.run([str(KEEL), "models", "nope"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from keel.cli import main\n"
        "sys.argv = ['keel', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ['pandas', 'sqlalchemy', 'sklearn', 'pyarrow', 'keel.workspace.facade', 'fastapi']\n"
        "print(','.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "Usage" in done.stdout
    assert done.stderr.strip() == ""


def test_text_that_looks_like_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    home, path = tmp_path / "ws", tmp_path / "credit.csv"
    credit_frame(30, 6).rename(columns={"age": "age [years]"}).to_csv(path, index=False)
    code, _, err = keel_cli(home, "data", "add", "credit", str(path), "--description", "[draft] export [/bold]")
    assert code == 0, err
    code, out, err = keel_cli(home, "data", "show", "credit")
    assert code == 0, err
    assert "[draft] export [/bold]" in out and "age [years]" in out
    code, out, err = keel_cli(home, "data", "list")
    assert code == 0 and "[draft] export [/bold]" in out


def test_predict_with_a_pickled_model_needs_trusted(tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier

    home, path = tmp_path / "ws", tmp_path / "rows.csv"
    pd.DataFrame({"x": [1.0, 2.0]}).to_csv(path, index=False)
    with keel.Workspace(Settings(home=home)) as ws:
        X = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
        ws.models.register("dummy", DummyClassifier().fit(X, ["a", "b", "b"]), X=X, flavor="pickle")
    code, out, err = keel_cli(home, "models", "predict", "dummy", str(path))
    assert_one_line_error((code, out, err), code=1, contains="--trusted")
    result = keel_json(home, "models", "predict", "dummy", str(path), "--trusted")
    assert isinstance(result, dict)
    assert [p["prediction"] for p in result["predictions"]] == ["b", "b"]
