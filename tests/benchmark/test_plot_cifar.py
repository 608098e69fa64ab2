"""tools/plot_cifar.py on small fake bench / results JSON files: the table's rows and numbers, the PNG."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_tool():
    spec = importlib.util.spec_from_file_location("plot_cifar", os.path.join(ROOT, "tools", "plot_cifar.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plot_cifar = _load_tool()


def _entry(model, macs, litert, tf, train, status="ok"):
    timings = {"litert_b1": {"median_ms": litert}, "tf_b256": {"median_ms": tf}, "tf_b1": {"median_ms": 0.5},
               "train_b128": {"error": "train setup failed"} if train is None else {"median_ms": train}}
    return {"model": model, "status": status, "macs": macs, "params": macs // 100, "timings": timings}


BENCH = {
    "config": {"suite": "cifar", "batches": [1, 256], "litert_batches": [1], "train_batch": 128},
    "results": [_entry("EffNet", 9_500_000, 0.4, 60.0, 300.0), _entry("Net", 40_000_000, 1.2, 150.0, 500.0),
                _entry("Mobile", 28_000_000, 0.9, 120.0, None)],
}


def _run(model, seed, acc):
    return {"model": model, "seed": seed, "epochs": 10, "macs": 1, "params": 1, "val_accuracy_best": acc,
            "val_accuracy_best_flip_tta": acc + 0.01}


RESULTS = {"runs": {
    "EffNet-s0": _run("EffNet", 0, 0.80), "EffNet-s1": _run("EffNet", 1, 0.82),
    "Net-s0": _run("Net", 0, 0.81), "Mobile-s0": _run("Mobile", 0, 0.78),
    "Unbenched-s0": {"model": "Unbenched", "seed": 0, "macs": 5_000_000, "params": 7, "val_accuracy_best": 0.5},
}}


def test_summary_and_markdown_table():
    columns = plot_cifar.bench_columns(BENCH)
    assert columns == [("litert_b1", "LiteRT b1"), ("tf_b256", "TF b256"), ("train_b128", "train b128")]
    rows = plot_cifar.summarize(BENCH, RESULTS)
    assert [r["model"] for r in rows] == ["Unbenched", "EffNet (10 ep)", "Mobile (10 ep)", "Net (10 ep)"]  # by MACs
    eff = rows[1]
    assert eff["n"] == 2 and eff["acc_mean"] == pytest.approx(0.81) and eff["acc_spread"] == pytest.approx(0.01)
    assert eff["macs"] == 9_500_000 and eff["tf_b256"] == 60.0  # the bench's numbers win over the results'
    table = plot_cifar.markdown_table(rows, columns).splitlines()
    assert table[0] == ("| model | MACs | params | val acc (mean ± spread, n) | LiteRT b1 ms | TF b256 ms "
                        "| train b128 ms |")
    assert len(table) == 2 + len(rows)
    assert "| EffNet (10 ep) | 9.5 M | 95 k | 81.00 ± 1.00 % (2 seeds) | 0.40 | 60.00 | 300 |" in table
    assert "| Mobile (10 ep) | 28.0 M | 280 k | 78.00 ± 0.00 % (1 seed) | 0.90 | 120 | n/a |" in table  # errored cell
    assert any(line.startswith("| Unbenched | 5.0 M |") and line.endswith("| n/a | n/a | n/a |") for line in table)
    tta = plot_cifar.summarize(BENCH, RESULTS, metric="flip_tta")
    assert "Unbenched" not in [r["model"] for r in tta]  # no flip-TTA accuracy recorded for it


def test_main_writes_a_png_and_prints_the_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    bench, results, out = tmp_path / "bench.json", tmp_path / "results.json", tmp_path / "cifar.png"
    bench.write_text(json.dumps(BENCH))
    results.write_text(json.dumps(RESULTS))
    assert plot_cifar.main(["--bench", str(bench), "--results", str(results), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for model in ("EffNet (10 ep)", "Net (10 ep)", "Mobile (10 ep)", "Unbenched"):
        assert f"| {model} |" in printed
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 10_000


def test_distilled_runs_get_their_own_row_with_the_models_timings():
    results = {"runs": {**RESULTS["runs"],
                        "EffNet-s0-distill": {**_run("EffNet", 0, 0.84), "distill_from": "Net:cifar10"}}}
    rows = {r["model"]: r for r in plot_cifar.summarize(BENCH, results)}
    assert rows["EffNet (10 ep)"]["n"] == 2 and rows["EffNet (10 ep)"]["acc_mean"] == pytest.approx(0.81)
    distilled = rows["EffNet (10 ep, distilled)"]
    assert distilled["n"] == 1 and distilled["acc_mean"] == pytest.approx(0.84)
    assert distilled["tf_b256"] == 60.0 and distilled["macs"] == 9_500_000


def test_runs_of_another_epoch_budget_are_not_pooled_with_the_10_epoch_seeds():
    results = {"runs": {**RESULTS["runs"], "EffNet-36ep-s0": {**_run("EffNet", 0, 0.90), "epochs": 36}}}
    rows = {r["model"]: r for r in plot_cifar.summarize(BENCH, results)}
    assert rows["EffNet (10 ep)"]["n"] == 2 and rows["EffNet (10 ep)"]["acc_mean"] == pytest.approx(0.81)
    assert rows["EffNet (36 ep)"]["n"] == 1 and rows["EffNet (36 ep)"]["acc_mean"] == pytest.approx(0.90)
    assert rows["EffNet (36 ep)"]["train_b128"] == 300.0


def test_a_models_rows_run_in_epoch_order_not_label_order():
    results = {"runs": {**RESULTS["runs"], "EffNet-100ep-s0": {**_run("EffNet", 0, 0.91), "epochs": 100},
                        "EffNet-36ep-s0": {**_run("EffNet", 0, 0.90), "epochs": 36}}}
    labels = [r["model"] for r in plot_cifar.summarize(BENCH, results) if r["arch"] == "EffNet"]
    assert labels == ["EffNet (10 ep)", "EffNet (36 ep)", "EffNet (100 ep)"]  # a string sort puts 100 first


def test_point_styles_share_a_colour_per_model_and_tell_every_row_apart():
    runs = {f"M{i}-{e}": {**_run(f"M{i}", 0, 0.8), "epochs": e} for i in range(11) for e in (10, 50)}
    rows = plot_cifar.summarize(BENCH, {"runs": runs})
    styles = plot_cifar.point_styles(rows)
    assert len(set(styles.values())) == len(rows) == 22  # 11 models: colours repeat, (colour, marker) do not
    assert styles["M3 (10 ep)"][0] == styles["M3 (50 ep)"][0]
    assert styles["M3 (10 ep)"][1] != styles["M3 (50 ep)"][1]


def test_runs_with_recipe_changes_get_their_own_row():
    results = {"runs": {**RESULTS["runs"],
                        "EffNet-s0-cutmix1": {**_run("EffNet", 0, 0.86), "recipe_changes": {"cutmix": 1.0}},
                        "EffNet-s0-ra": {**_run("EffNet", 0, 0.83), "recipe_changes": {"augment": "randaugment", "mixup": 0.2}}}}
    rows = {r["model"]: r for r in plot_cifar.summarize(BENCH, results)}
    assert rows["EffNet (10 ep)"]["n"] == 2 and rows["EffNet (10 ep)"]["acc_mean"] == pytest.approx(0.81)
    assert rows["EffNet (10 ep, cutmix 1)"]["acc_mean"] == pytest.approx(0.86)
    assert rows["EffNet (10 ep, augment randaugment, mixup 0.2)"]["n"] == 1
