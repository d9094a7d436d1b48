"""Bad input of every kind: one line that says the fix, exit code 2, nothing written."""

from __future__ import annotations

import contextlib
import io

import pytest

from common.net import free_port
from tests.support import run_training, train_args
from training.train import main


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse reports bad flags by exiting
            code = e.code
    return code, out.getvalue(), err.getvalue()


BAD_FLAGS = [
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--epochs", "-3"], "--epochs must be a positive integer"),
    (["--epochs", "three"], "invalid int value"),
    (["--model", "transformer-xl"], "invalid choice"),
    (["--dataset", "imagenet"], "invalid choice"),
    (["--lr", "-0.1"], "--lr -0.1 is out of range"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--batch-size", "100000"], "larger than the 512 training samples"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--model", "gpt"], "trains on token data"),
    (["--fallback-dataset", "digits"], "is the dataset already asked for"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive integer"),
    (["--val-fraction", "0.9"], "--val-fraction 0.9 must be in (0, 0.5)"),
    (["--checkpoint-dir", "ftp://host/x"], "only local paths and s3:// URLs"),
    (["--checkpoint-dir", "s3://"], "names no bucket"),
    (["--activation-checkpointing"], "applies to --model gpt only"),
    (["--unknown-flag"], "unrecognized arguments"),
    (["--epoch", "3"], "unrecognized arguments: --epoch"),  # no abbreviations
    (["--synthetic-samples", "1000000000000"], "use at most 1000000"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_FLAGS)
def test_bad_flag_exits_2_with_one_line_and_writes_nothing(extra, message, tmp_path) -> None:
    if extra == ["--device", "cuda"] and _cuda_available():
        pytest.skip("this machine has CUDA")
    checkpoints = tmp_path / "ckpt"
    argv = train_args("cnn", "digits", smoke_test=True, epochs=1)
    if "--checkpoint-dir" not in extra:
        argv += ["--checkpoint-dir", str(checkpoints)]
    code, out, err = run_main(argv + extra)  # the later flag wins
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert out == ""
    assert not checkpoints.exists()


def test_unreadable_data_dir_is_refused(tmp_path) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("oops")
    code, _, err = run_main(train_args("cnn", "mnist", data_dir=str(not_a_dir)))
    assert code == 2
    assert "is not a directory" in err


def test_checkpoint_dir_that_cannot_be_written_is_refused_before_training(tmp_path) -> None:
    # procfs refuses new entries to every user, root included, unlike a chmod'ed directory.
    code, out, err = run_main(
        train_args("cnn", "digits", smoke_test=True, checkpoint_dir="/proc/trainops/ckpt")
    )
    assert code == 2 and out == ""
    assert err.startswith("error: --checkpoint-dir /proc/trainops/ckpt cannot be written")
    assert "choose a writable path" in err and err.count("\n") == 1


def test_unreachable_s3_is_refused_with_the_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    code, out, err = run_main(
        train_args("cnn", "digits", smoke_test=True, checkpoint_dir="s3://bucket/ckpt")
    )
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--checkpoint-dir s3://bucket/ckpt cannot be reached" in err
    assert "AWS_ENDPOINT_URL" in err

    code, out, err = run_main(train_args("cnn", "mnist", data_dir="s3://bucket/data"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "mnist is not available: s3://bucket/data/mnist cannot be read" in err
    assert "--fallback-dataset digits" in err


def test_missing_dataset_without_fallback_names_the_fix(tmp_path) -> None:
    code, out, err = run_main(
        train_args(
            "cnn",
            "mnist",
            data_dir=str(tmp_path / "data"),
            no_download=True,
            checkpoint_dir=str(tmp_path / "ckpt"),
        )
    )
    assert out == ""
    assert code == 2
    assert "mnist is not available" in err and "--fallback-dataset digits" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "data").exists() and not (tmp_path / "ckpt").exists()


def test_batch_that_does_not_split_over_ranks_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    code, _, err = run_main(train_args("cnn", "digits", batch_size=64))
    assert code == 2
    assert "use a multiple of 3" in err


def test_bad_metrics_port_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("TRAINOPS_METRICS_PORT", "ninety")
    code, _, err = run_main(train_args("cnn", "digits", smoke_test=True))
    assert code == 2
    assert "TRAINOPS_METRICS_PORT" in err


def test_bad_mlflow_tracking_uri_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nope://x")
    code, _, err = run_main(train_args("cnn", "digits", smoke_test=True))
    assert code == 2 and err.count("\n") == 1
    assert "MLFLOW_TRACKING_URI='nope://x' is not a tracking server" in err


def test_checkpoint_of_another_model_is_refused(tmp_path, monkeypatch) -> None:
    checkpoints = tmp_path / "ckpt"
    first = run_training(
        train_args("mlp", "digits", smoke_test=True, epochs=1, checkpoint_dir=str(checkpoints))
    )
    assert first.returncode == 0, first.stderr
    before = sorted(p.name for p in checkpoints.iterdir())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # would queue writes
    code, _, err = run_main(
        train_args("cnn", "digits", smoke_test=True, epochs=2, checkpoint_dir=str(checkpoints))
    )
    assert code == 2
    assert "holds a mlp trained on digits" in err and "fresh --checkpoint-dir" in err
    assert sorted(p.name for p in checkpoints.iterdir()) == before  # no outbox, no run record


def test_checkpoint_of_other_shapes_is_refused_with_the_flag_that_differs(tmp_path) -> None:
    checkpoints = str(tmp_path / "ckpt")
    args = ["--synthetic-samples", "300", "--checkpoint-dir", checkpoints]
    first = run_training(train_args("gpt", "synthetic", epochs=1) + args + ["--seq-len", "16"])
    assert first.returncode == 0, first.stderr
    code, _, err = run_main(train_args("gpt", "synthetic", epochs=2) + args + ["--seq-len", "32"])
    assert code == 2 and err.count("\n") == 1
    assert "holds a gpt of other shapes (it was trained with --seq-len 16)" in err


def test_real_process_exits_2_without_traceback(tmp_path) -> None:
    run = run_training(train_args("cnn", "digits", epochs=0, checkpoint_dir=str(tmp_path / "ckpt")))
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["error: --epochs must be a positive integer, got 0"]
    assert run.stdout_lines == []
    assert not (tmp_path / "ckpt").exists()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
