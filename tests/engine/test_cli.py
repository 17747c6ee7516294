"""The command line writes a PNG through the same worker as the bot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from engine.cli import main
from engine.images.metadata import parse_parameters, read_parameters
from tests.fixtures.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parents[2]


def common(tiny_models: TinyModels, out: Path) -> list[str]:
    return [
        "--prompt", "a lighthouse", "--seed", "42", "--steps", "2",
        "--width", "64", "--height", "64", "--out", str(out), "--device", "cpu", "--offline",
        "--safety-checker", str(tiny_models.safety_checker_never),
    ]  # fmt: skip


def test_generate(tiny_models: TinyModels, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "a.png"
    code = main(["generate", "--model", str(tiny_models.text_to_image), *common(tiny_models, out)])
    assert code == 0
    fields = parse_parameters(read_parameters(out.read_bytes()) or "")
    assert (fields["prompt"], fields["Seed"], fields["Steps"]) == ("a lighthouse", "42", "2")
    assert fields["Model"] == "tiny-sd"
    assert "with seed 42" in capsys.readouterr().out


def test_inpaint(tiny_models: TinyModels, tmp_path: Path) -> None:
    Image.new("RGB", (128, 128), (0, 90, 200)).save(tmp_path / "in.png")
    Image.new("L", (128, 128), 255).save(tmp_path / "mask.png")
    out = tmp_path / "b.png"
    code = main(
        [
            "inpaint", "--model", str(tiny_models.inpainting), *common(tiny_models, out),
            "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
            "--strength", "0.5",
        ]
    )  # fmt: skip
    assert code == 0
    with Image.open(out) as image:
        assert image.size == (64, 64)
    assert parse_parameters(read_parameters(out.read_bytes()) or "")["Denoising strength"] == "0.5"


def test_img2img(tiny_models: TinyModels, tmp_path: Path) -> None:
    Image.new("RGB", (128, 128), (0, 90, 200)).save(tmp_path / "in.png")
    out = tmp_path / "c.png"
    arguments = ["img2img", "--model", str(tiny_models.text_to_image), *common(tiny_models, out)]
    assert main([*arguments, "--image", str(tmp_path / "in.png"), "--strength", "0.5"]) == 0
    with Image.open(out) as image:
        assert image.size == (64, 64)
    assert parse_parameters(read_parameters(out.read_bytes()) or "")["Denoising strength"] == "0.5"


def test_depth(tiny_models: TinyModels, tiny_depth: Path, tmp_path: Path) -> None:
    Image.new("RGB", (128, 128), (0, 90, 200)).save(tmp_path / "in.png")
    out = tmp_path / "d.png"
    arguments = ["depth", "--model", str(tiny_depth), *common(tiny_models, out)]
    assert main([*arguments, "--image", str(tmp_path / "in.png"), "--strength", "1"]) == 0
    with Image.open(out) as image, Image.open(tmp_path / "d_depth_map.png") as depth:
        assert image.size == depth.size == (64, 64) and depth.mode == "L"


def test_errors_are_reported_with_an_exit_status(
    tiny_models: TinyModels, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "c.png"
    args = common(tiny_models, out)
    args[args.index("--width") + 1] = "65"
    assert main(["generate", "--model", str(tiny_models.text_to_image), *args]) == 1
    assert "error: width must be a multiple of 8 (got 65)" in capsys.readouterr().err
    assert not out.exists()


def test_python_dash_m_engine(tiny_models: TinyModels, tmp_path: Path) -> None:
    out = tmp_path / "d.png"
    done = subprocess.run(
        [sys.executable, "-m", "engine", "generate", "--model", str(tiny_models.text_to_image),
         *common(tiny_models, out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2/2" in done.stderr  # the progress bar
    in_process = tmp_path / "e.png"
    main(["generate", "--model", str(tiny_models.text_to_image), *common(tiny_models, in_process)])
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(in_process)))


def test_upscale(tiny_models: TinyModels, tiny_upscaler: Path, tmp_path: Path, capsys) -> None:
    """Four times the picture's own size, with the noise level asked for in its parameters."""
    Image.new("RGB", (72, 64), (0, 90, 200)).save(tmp_path / "small.png")
    out = tmp_path / "big.png"
    arguments = [
        "upscale", "--model", str(tiny_upscaler), "--prompt", "a lighthouse", "--seed", "7",
        "--steps", "2", "--image", str(tmp_path / "small.png"), "--noise-level", "40",
        "--out", str(out), "--device", "cpu", "--offline",
        "--safety-checker", str(tiny_models.safety_checker_never),
    ]  # fmt: skip
    assert main(arguments) == 0
    with Image.open(out) as image:
        assert image.size == (288, 256)
    assert "with seed 7, 288x256" in capsys.readouterr().out
    assert "40" in parse_parameters(read_parameters(out.read_bytes()) or "")["Noise level"]
    # A file that is no picture is one line and exit status 1, before any model loads.
    (tmp_path / "notes.png").write_text("not a picture")
    arguments[arguments.index(str(tmp_path / "small.png"))] = str(tmp_path / "notes.png")
    assert main(arguments) == 1
    assert f"error: cannot read {tmp_path / 'notes.png'} as a picture" in capsys.readouterr().err
