import json

from karmma.cli import main


def test_benchmark_tiny_writes_json_and_plot(tmp_path):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(["benchmark", "--preset", "tiny", "--json", str(out), "--plot", str(plot), "--repeats", "1", "--warmup", "0"])
    assert code == 0
    results = json.loads(out.read_text())
    assert results["preset"] == "tiny"
    assert set(results["models"]) == {"teacher", "student"}
    subsets = results["models"]["student"]["subsets"]
    assert list(subsets) == ["V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"]
    for row in subsets.values():
        assert set(row) == {"gflops", "params_m", "peak_mem_mb", "latency_ms"}
        assert all(v > 0 for v in row.values())
    teacher = results["models"]["teacher"]["subsets"]
    assert teacher["V+F+A"]["gflops"] > teacher["V"]["gflops"] > subsets["V"]["gflops"]
    assert plot.stat().st_size > 10_000


def test_benchmark_rejects_unknown_modality(tmp_path, capsys):
    code = main(["benchmark", "--json", str(tmp_path / "x.json"), "--modalities", "V,X", "--repeats", "1"])
    assert code == 2
    assert "no modality ['X']" in capsys.readouterr().err
