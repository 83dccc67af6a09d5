"""`forge runs metrics`: a run's curves read back from the files CSVLogger and DVCLive write, their
summaries, sampling, the table, the JSON, the PNG and the one-line errors."""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from forge.errors import ForgeError
from forge.runs import chart
from forge.runs.metrics import main, origins, sample, series, sparkline, summary

from conftest import run_in_process, tiny

# What Lightning's CSVLogger writes (csv.DictWriter: "\r\n" line ends, columns sorted, one row per
# logging call holding only what that call logged), as a tiny quickstart run with logger=csv does.
CSV = (
    "epoch,step,train/exact_match,train/loss,val/exact_match,val/loss,val/token_accuracy\r\n"
    "0,4,0.0,2.5,,,\r\n"
    "0,9,0.0,2.25,,,\r\n"
    "0,9,,,0.0,2.4,0.125\r\n"
    "0,14,0.0,2.0,,,\r\n"
    "1,19,0.0,1.75,,,\r\n"
    "1,19,,,0.5,2.1,0.25\r\n"
)


def dvclive_files(run: Path, files: dict[str, str]) -> None:
    """DVCLive's layout: dvclive/plots/metrics/NAME.tsv, a `step` column and one named after
    NAME's last part; epoch.tsv holds the epoch it logs at every call."""
    for name, rows in files.items():
        path = run / "dvclive" / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"step\t{name.rsplit('/', 1)[-1]}\n{rows}")


@pytest.fixture
def csv_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "csv").mkdir(parents=True)
    (run / "csv" / "metrics.csv").write_text(CSV, newline="")
    return run


@pytest.fixture
def dvclive_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    dvclive_files(run, {
        "epoch": "4\t0\n9\t0\n9\t0\n14\t0\n19\t1\n19\t1\n",
        "train/loss": "4\t2.5\n9\t2.25\n14\t2.0\n19\t1.75\n",
        "val/loss": "9\t2.4\n19\t2.1\n",
    })
    return run


def test_series_from_csvlogger_file(csv_run: Path) -> None:
    assert series(csv_run) == {
        "train/exact_match": [(4, 0.0), (9, 0.0), (14, 0.0), (19, 0.0)],
        "train/loss": [(4, 2.5), (9, 2.25), (14, 2.0), (19, 1.75)],
        "val/exact_match": [(9, 0.0), (19, 0.5)],
        "val/loss": [(9, 2.4), (19, 2.1)],
        "val/token_accuracy": [(9, 0.125), (19, 0.25)],
    }
    assert origins(csv_run) == {name: ["csv/metrics.csv"] for name in series(csv_run)}


def test_series_from_dvclive_files(dvclive_run: Path) -> None:
    assert series(dvclive_run) == {"train/loss": [(4, 2.5), (9, 2.25), (14, 2.0), (19, 1.75)], "val/loss": [(9, 2.4), (19, 2.1)]}
    assert origins(dvclive_run) == {"train/loss": ["dvclive/plots/metrics/train/loss.tsv"], "val/loss": ["dvclive/plots/metrics/val/loss.tsv"]}


def test_a_step_logged_again_after_resume_keeps_its_last_value(tmp_path: Path) -> None:
    """A run resumed from its step-9 checkpoint appends steps 14 and 19 again; the curve is the
    one the final weights followed."""
    dvclive_files(tmp_path, {"train/loss": "4\t2.5\n9\t2.25\n14\t2.0\n9\t2.25\n14\t1.9\n19\t1.5\n"})
    assert series(tmp_path) == {"train/loss": [(4, 2.5), (9, 2.25), (14, 1.9), (19, 1.5)]}


def test_both_loggers_are_read_and_named(csv_run: Path) -> None:
    dvclive_files(csv_run, {"train/loss": "19\t1.5\n24\t1.25\n", "val/bleu": "19\t0.5\n"})
    curves, sources = series(csv_run), origins(csv_run)
    assert curves["train/loss"] == [(4, 2.5), (9, 2.25), (14, 2.0), (19, 1.5), (24, 1.25)]
    assert sources["train/loss"] == ["csv/metrics.csv", "dvclive/plots/metrics/train/loss.tsv"]
    assert sources["val/bleu"] == ["dvclive/plots/metrics/val/bleu.tsv"]
    assert sources["val/loss"] == ["csv/metrics.csv"]


def test_a_line_still_being_written_is_left_out(tmp_path: Path) -> None:
    dvclive_files(tmp_path, {"train/loss": "4\t2.5\n9\t2.2"})
    assert series(tmp_path) == {"train/loss": [(4, 2.5)]}


def test_summary() -> None:
    assert summary([(0, 3.0), (10, 1.0), (20, 2.0), (30, 1.0)]) == {
        "count": 4, "first_step": 0, "first": 3.0, "last_step": 30, "last": 1.0,
        "min_step": 10, "min": 1.0, "max_step": 0, "max": 3.0, "mean": 1.75,
    }


def test_summary_of_a_diverged_curve_keeps_nan_out_of_min_max_mean() -> None:
    s = summary([(0, 2.0), (5, 1.0), (10, math.nan)])
    assert math.isnan(s["last"])
    assert (s["min"], s["min_step"], s["max"], s["max_step"], s["mean"], s["count"]) == (1.0, 5, 2.0, 0, 1.5, 3)


def test_sample_keeps_every_nth_point_and_the_last() -> None:
    curve = [(s, float(s)) for s in range(0, 100, 10)]  # 10 points
    assert [s for s, _ in sample(curve, 3)] == [0, 30, 60, 90]
    assert [s for s, _ in sample(curve, 4)] == [0, 40, 80, 90]
    assert sample(curve, 1) == curve
    assert sample(curve, 50) == [(0, 0.0), (90, 90.0)]
    with pytest.raises(ValueError):
        sample(curve, 0)


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([2.5, 2.25, 2.0, 1.75]) == "█▆▃▁"
    assert sparkline([1.0, 1.0, 1.0]) == "▄▄▄"
    assert sparkline([0.0, math.nan, 1.0]) == "▁ █"


def test_table(csv_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(csv_run)])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == [f"{csv_run}:", "5", "metrics"]
    assert ["metric", "points", "first", "last", "min", "@step", "max", "@step", "mean", "curve"] in lines
    assert ["train/loss", "4", "2.5", "1.75", "1.75", "@19", "2.5", "@4", "2.125", "█▆▃▁"] in lines
    assert ["val/token_accuracy", "2", "0.125", "0.25", "0.125", "@9", "0.25", "@19", "0.1875", "▁█"] in lines
    assert ["from", "csv/metrics.csv"] in lines


def test_table_of_chosen_metrics_with_sampling(dvclive_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(dvclive_run), "val/loss", "--every", "3", "train/loss"])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = [line for line in lines if line and line[0] in ("train/loss", "val/loss")]
    # the summary is of every point; the sparkline of steps 4 and 19 (every 3rd, and the last)
    assert rows == [["val/loss", "2", "2.4", "2.1", "2.1", "@19", "2.4", "@9", "2.25", "█▁"],
                    ["train/loss", "4", "2.5", "1.75", "1.75", "@19", "2.5", "@4", "2.125", "█▁"]]
    assert ["from", "dvclive/plots/metrics/NAME.tsv"] in lines


def test_table_names_the_file_of_each_metric_when_both_loggers_wrote(csv_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dvclive_files(csv_run, {"val/bleu": "19\t0.5\n"})
    main([str(csv_run), "val/bleu", "val/loss"])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines[2][-1] == "from"
    assert ["val/bleu", "1", "0.5", "0.5", "0.5", "@19", "0.5", "@19", "0.5", "▄", "dvclive/plots/metrics/val/bleu.tsv"] in lines
    assert ["val/loss", "2", "2.4", "2.1", "2.1", "@19", "2.4", "@9", "2.25", "█▁", "csv/metrics.csv"] in lines


def test_json(csv_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(csv_run), "train/loss", "val/loss", "--every", "2", "--json"])
    assert json.loads(capsys.readouterr().out) == {
        "train/loss": {
            "points": [[4, 2.5], [14, 2.0], [19, 1.75]],
            "summary": {"count": 4, "first_step": 4, "first": 2.5, "last_step": 19, "last": 1.75,
                        "min_step": 19, "min": 1.75, "max_step": 4, "max": 2.5, "mean": 2.125},
            "from": ["csv/metrics.csv"],
        },
        "val/loss": {
            "points": [[9, 2.4], [19, 2.1]],
            "summary": {"count": 2, "first_step": 9, "first": 2.4, "last_step": 19, "last": 2.1,
                        "min_step": 19, "min": 2.1, "max_step": 9, "max": 2.4, "mean": 2.25},
            "from": ["csv/metrics.csv"],
        },
    }


def test_json_writes_a_non_finite_value_as_null(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dvclive_files(tmp_path, {"train/loss": "4\t2.5\n9\tnan\n"})
    main([str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)["train/loss"]
    assert out["points"] == [[4, 2.5], [9, None]]
    assert (out["summary"]["last"], out["summary"]["min"], out["summary"]["mean"]) == (None, 2.5, 2.5)


def read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = {}, 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        at += 12 + length
    assert set(chunks) == {b"IHDR", b"IDAT", b"IEND"}
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + width * 3)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, 3)


def test_plot(csv_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "plots" / "curves.png"  # its folder is made
    main([str(csv_run), "train/loss", "val/loss", "--plot", str(png)])
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {png}"
    img = read_png(png)
    assert img.shape == (2 * chart.PANEL, chart.WIDTH, 3)
    # train/loss starts at its highest value (top left of its plot) and ends at its lowest
    # (bottom right), drawn in the first colour; val/loss likewise in the second colour.
    for i, color in enumerate([(31, 119, 180), (255, 127, 14)]):
        left, top, right, bottom = chart.plot_box(i * chart.PANEL)
        assert tuple(img[top + 2, left + 2]) == color
        assert tuple(img[bottom - 2, right - 2]) == color
        assert tuple(img[bottom - 2, left + 2]) == (255, 255, 255)


def test_plot_with_json_keeps_stdout_json(csv_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(csv_run), "--json", "--plot", str(tmp_path / "c.png")])
    assert set(json.loads(capsys.readouterr().out)) == {"train/exact_match", "train/loss", "val/exact_match", "val/loss", "val/token_accuracy"}
    assert read_png(tmp_path / "c.png").shape == (5 * chart.PANEL, chart.WIDTH, 3)


def test_unknown_metric_names_the_known_ones(csv_run: Path) -> None:
    with pytest.raises(ForgeError) as e:
        main([str(csv_run), "val/los"])
    assert str(e.value) == (f"run '{csv_run}' logged no metric 'val/los'. Did you mean 'val/loss'? "
                            "Known: train/exact_match, train/loss, val/exact_match, val/loss, val/token_accuracy.")


def test_a_run_without_logged_metrics(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    with pytest.raises(ForgeError) as e:
        main([str(tmp_path)])
    assert str(e.value) == (f"run '{tmp_path}' has no logged metrics: looked for {tmp_path}/csv/metrics.csv and "
                            f"{tmp_path}/dvclive/plots/metrics/*.tsv. Train with logger=csv or logger=dvclive to log curves.")


@pytest.mark.parametrize("args, message", [
    (["nowhere"], "no run directory at 'nowhere': RUN is the folder a run wrote"),
    (["RUN", "--every", "0"], "--every must be a whole number of at least 1, not 0."),
    (["RUN", "--every", "two"], "argument --every: invalid int value: 'two'. Usage: forge runs metrics RUN"),
    (["RUN", "--color"], "unrecognized arguments: --color. Usage: forge runs metrics RUN"),
    ([], "the following arguments are required: RUN. Usage: forge runs metrics RUN"),
    (["RUN", "--plot", "RUN/csv"], "cannot write the plot to 'run/csv': Is a directory. Pass --plot the path of a PNG file to write."),
])
def test_bad_arguments_are_one_line(csv_run: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(csv_run.parent)
    with pytest.raises(ForgeError) as e:
        main([a.replace("RUN", csv_run.name) for a in args])
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_a_real_run_logged_with_csvlogger(tmp_path: Path, cache: Path) -> None:
    """The hand-written files above have the shape the loggers write: a tiny real run's curves."""
    run = tmp_path / "run"
    run_in_process(*tiny(cache), "logger=csv", run_dir=run)
    curves = series(run)
    assert set(curves) == {"train/exact_match", "train/loss", "val/exact_match", "val/loss", "val/selection", "val/token_accuracy"}
    assert [s for s, _ in curves["train/loss"]] == [4, 9, 14, 19]
    assert [s for s, _ in curves["val/loss"]] == [9, 19]
    assert all(math.isfinite(v) for _, v in curves["train/loss"])


def test_dvclive_timestamp_column_and_text_values(tmp_path: Path) -> None:
    """Live(timestamp=True) adds a first column; a string logged with log_metric is no curve."""
    path = tmp_path / "dvclive" / "plots" / "metrics" / "lr.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("timestamp\tstep\tlr\n1700000000000\t0\t0.001\n1700000001000\t10\tdone\n")
    assert series(tmp_path) == {"lr": [(0, 0.001)]}
