"""Bad input gets one clear line naming the value and what is valid, exit code 2, and nothing
written (issue 16, items 9-11)."""

from __future__ import annotations

import pytest

from trickbag.cli import main

from .helpers import write_config


def one_clear_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("override, needles", [
    ("optimizer.momentum=fast", ("optimizer.momentum", "'fast'", "number")),
    ("optimizer.lr=fast", ("optimizer.lr", "'fast'", "number")),
    ("optimizer.lrr=0.1", ("'lrr'", "did you mean 'lr'", " lr,", "weight_decay")),
    ("optimizer.betas=[0.9]", ("betas",)),
    ("train.seed=abc", ("train.seed", "'abc'", "integer >= 0")),
    ("train.threads=-1", ("train.threads", "-1", "integer >= 1")),
    ("data.subset=-3", ("data.subset", "-3", "integer >= 1")),
    ("train.checkpoint_every_steps=0", ("train.checkpoint_every_steps", "0", "integer >= 1")),
    ("train.epochs=0", ("train.epochs", "integer >= 1")),
    ("train.device=fast", ("train.device", "'fast'", "'cpu'")),
    ("data.batch_size=1.5", ("data.batch_size", "1.5")),
    ("train.nan_guard=maybe", ("train.nan_guard", "true or false")),
])
def test_bad_train_values_fail_before_the_run_directory_exists(override, needles, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(tmp_path)), "--out", str(out), override]) == 2
    one_clear_line(capsys.readouterr().err, *needles)
    assert not out.exists()
    # and the same --out is still usable: nothing half-written blocks it
    assert main(["train", "--config", str(write_config(tmp_path, {"epochs": 1})), "--out", str(out)]) == 0


@pytest.mark.parametrize("verb", ["ablate", "search"])
def test_zero_workers_is_refused(verb, tmp_path, capsys):
    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None})
    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(0.001, 0.1)\n")
    extra = ["--tricks", "ema"] if verb == "ablate" else ["--space", str(space), "--trials", "3"]
    out = tmp_path / "out"
    assert main([verb, "--config", str(config), *extra, "--workers", "0", "--out", str(out), "--quiet"]) == 2
    one_clear_line(capsys.readouterr().err, "workers must be an integer >= 1, got 0")
    assert not out.exists()


# ---- data sets: archives and folders that reach outside ------------------------------------------

def png_bytes(value: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (4, 4), color=value).save(buf, format="PNG")
    return buf.getvalue()


def good_members():
    return [(f"pack/{split}/{cls}/{i}.png", png_bytes(40 * i + 10 * j)) for split in ("train", "test")
            for j, cls in enumerate(("cat", "dog")) for i in range(3)]


def write_tar(path, extra):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in good_members():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            data = png_bytes(7) if info.isreg() else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def member(name, kind=None, link=""):
    import tarfile

    info = tarfile.TarInfo(name)
    if kind is not None:
        info.type, info.linkname = kind, link
    return info


def bad_members():
    import tarfile

    return {
        "parent": (member("pack/train/../../evil.png"), "'..'"),
        "absolute": (member("/tmp/evil.png"), "absolute"),
        "symlink": (member("pack/train/cat/link.png", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        "hard link": (member("pack/train/cat/hard.png", tarfile.LNKTYPE, "pack/train/cat/0.png"), "hard link"),
        "device": (member("pack/train/cat/dev", tarfile.CHRTYPE), "device"),
    }


@pytest.mark.parametrize("kind", list(bad_members()))
def test_archive_members_that_escape_or_are_not_files_are_refused_by_name(kind, tmp_path, capsys, monkeypatch):
    pytest.importorskip("PIL")
    monkeypatch.setenv("TRICKBAG_CACHE", str(tmp_path / "cache"))
    info, why = bad_members()[kind]
    archive = write_tar(tmp_path / "pack.tar.gz", [info])
    from trickbag.data import image_folder

    with pytest.raises(ValueError, match="refusing archive member") as caught:
        image_folder(archive, use_cache=False)
    assert repr(info.name) in str(caught.value) and why in str(caught.value)
    # the command line: one line, exit 2, no run directory
    out = tmp_path / "run"
    config = write_config(tmp_path, {"epochs": 1}, data={"name": "image_folder", "path": str(archive), "batch_size": 2},
                          model={"name": "small_cnn", "width": 4}, tricks=[])
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    one_clear_line(capsys.readouterr().err, "refusing archive member", info.name)
    assert not out.exists()


def test_a_clean_archive_still_loads(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    import tarfile

    from trickbag.data import image_folder

    archive = write_tar(tmp_path / "pack.tar.gz", [member("pack/train/", tarfile.DIRTYPE)])
    splits = image_folder(archive, use_cache=False)
    assert splits.train.classes == ["cat", "dog"] and len(splits.train) == 6 and len(splits.test) == 6


def test_a_symlink_out_of_an_image_folder_is_skipped_with_a_warning(tmp_path):
    pytest.importorskip("PIL")
    from trickbag.data import image_folder

    root = tmp_path / "images"
    for name, data in good_members():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes(200))
    (root / "pack" / "train" / "cat" / "leak.png").symlink_to(outside)
    (root / "pack" / "train" / "dog" / "inside.png").symlink_to(root / "pack" / "train" / "dog" / "0.png")
    with pytest.warns(UserWarning, match="skipping pack/train/cat/leak.png: a symbolic link out of the folder"):
        splits = image_folder(root, use_cache=False)
    assert len(splits.train) == 7  # 6 files and the link that stays inside; not the one that leaves


# ---- storage, space files --------------------------------------------------------------------------

def test_an_unreachable_postgresql_server_gets_one_sentence(tmp_path, capsys):
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None})
    assert main(["ablate", "--config", str(config), "--tricks", "ema", "--storage",
                 f"postgresql://postgres:secret@127.0.0.1:{port}/x", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    one_clear_line(err, "cannot open the trial storage", f"127.0.0.1:{port}", "refused")
    assert "secret" not in err
    assert not out.exists()


def test_a_corrupt_study_db_gets_one_sentence_and_is_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    junk = bytes(range(256)) * 20
    (out / "study.db").write_bytes(junk)
    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None})
    assert main(["ablate", "--config", str(config), "--tricks", "ema", "--out", str(out), "--quiet"]) == 2
    one_clear_line(capsys.readouterr().err, "study.db", "not a database")
    assert (out / "study.db").read_bytes() == junk


@pytest.mark.parametrize("text, needles", [
    ("lr: [0.1\nmomentum: x\n", ("not valid YAML", "line 2")),
    ("- lr\n- momentum\n", ("mapping",)),
])
def test_a_malformed_search_space_gets_one_sentence(text, needles, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    out = tmp_path / "out"
    config = write_config(tmp_path, {"epochs": 1, "checkpoint_every_epochs": None})
    assert main(["search", "--config", str(config), "--space", str(space), "--out", str(out), "--quiet"]) == 2
    one_clear_line(capsys.readouterr().err, *needles)
    assert not out.exists()
