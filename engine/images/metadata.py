"""PNG metadata in the AUTOMATIC1111 web UI format, so the usual SD tools read our images.

The ``parameters`` text chunk holds the prompt, then ``Negative prompt: ...`` (only when there
is one, as the web UI writes it), then one line of ``Key: value`` pairs. Values with commas,
colons or newlines are JSON-quoted, as the web UI does.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping

from PIL import Image, PngImagePlugin

from engine.protocol import SCHEDULERS, AdapterKind, JobKind, JobSpec

PARAMETERS_KEY = "parameters"
_NEGATIVE = "Negative prompt:"
# The web UI's own pattern for one `Key: value` pair of the last line.
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def _quote(value: object) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def parameters_text(
    spec: JobSpec,
    seed: int,
    model_revision: str | None = None,
    lora_hashes: Mapping[str, str] | None = None,
) -> str:
    """The ``parameters`` text for one image of a job; the revision is the one actually run.

    The prompt keeps its ``<lora:name:w>`` as the web UI writes it; ``lora_hashes`` (by name)
    give the web UI's "Lora hashes" for the job's LoRAs that have one."""
    pairs: dict[str, object] = {
        "Steps": spec.steps,
        "Sampler": SCHEDULERS.get(spec.scheduler, spec.scheduler),
        "CFG scale": float(spec.guidance),
        "Seed": seed,
        # What the picture is: an upscale's is ``scale`` times its input.
        "Size": f"{spec.width * spec.kind.scale}x{spec.height * spec.kind.scale}",
        "Model": spec.model.name,
    }
    if model_revision:
        pairs["Model revision"] = model_revision
    if spec.kind.uses_strength:
        pairs["Denoising strength"] = float(spec.strength)
    if spec.kind is JobKind.UPSCALE:
        # The web UI's key for an upscale of a finished picture, and the level the x4
        # upscaler was told (no web UI key: named the way diffusers names it).
        pairs["Postprocess upscale by"] = spec.kind.scale
        pairs["Noise level"] = spec.noise_level
    hashes = [
        f"{a.name}: {lora_hashes[a.name]}"
        for a in spec.adapters
        if a.kind is AdapterKind.LORA and lora_hashes and a.name in lora_hashes
    ]
    if hashes:
        pairs["Lora hashes"] = ", ".join(hashes)
    settings = ", ".join(f"{key}: {_quote(value)}" for key, value in pairs.items())
    negative = f"\n{_NEGATIVE} {spec.negative_prompt}" if spec.negative_prompt else ""
    return f"{spec.prompt}{negative}\n{settings}"


def parse_parameters(text: str) -> dict[str, str]:
    """Read a ``parameters`` text back, the way the web UI does.

    Returns ``prompt``, ``negative_prompt`` and every ``Key: value`` pair of the last line.
    """
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    result = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative)}
    for key, value in _PAIR.findall(last):
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            value = json.loads(value)
        result[key] = value
    return result


def png_with_parameters(image: Image.Image, parameters: str, compress_level: int = 6) -> bytes:
    """Encode ``image`` as PNG bytes carrying the ``parameters`` text chunk.

    ``compress_level`` is zlib's, 0-9; 6 is Pillow's default. The engine passes its
    ``png_compress_level`` setting: the fast levels cost a fraction of 6's time for a few
    percent more bytes (``bench/bench_png_encode.py``).
    """
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def read_parameters(png: bytes) -> str | None:
    """The ``parameters`` text of PNG bytes, or None."""
    with Image.open(io.BytesIO(png)) as image:
        return image.info.get(PARAMETERS_KEY)
