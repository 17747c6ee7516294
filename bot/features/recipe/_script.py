"""A job as a standalone diffusers script: the course's code, with this job's numbers.

The script does what the engine did, one image per call: the same pipeline class, the model's
own scheduler config with the engine's options, a CPU generator per seed, and on the CPU the
same convolution kernels (``engine/invariance.py`` explains why the engine picks them). So it
makes the same pixels on the same kind of hardware; ``tests/bot/test_recipe_script.py`` runs
scripts on the tiny model and compares.

Comparisons get a loop over their panels; the denoising strip also shows how the predicted
clean image is read from the scheduler at each step. Everything a student might wonder about
gets a comment, in the words of the course.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from bot.jobs.lessons import decode_steps, denoising_steps, variants
from bot.jobs.xy_plot import is_grid
from bot.store.models import Job
from engine.prompt_syntax import PromptSyntaxError, parse
from engine.protocol import (
    FAMILIES,
    FLUX_MAX_SEQUENCE_LENGTH,
    SCHEDULERS,
    AdapterKind,
    AdapterRef,
    Family,
    JobKind,
    ModelRef,
    is_folder_source,
)


@dataclass(frozen=True)
class SchedulerRecipe:
    """How to build one of the engine's schedulers with plain diffusers (engine/schedulers.py)."""

    cls: str
    options: dict[str, object] = field(default_factory=dict)
    about: str = ""


SCHEDULER_RECIPES: dict[str, SchedulerRecipe] = {
    "euler": SchedulerRecipe(
        "EulerDiscreteScheduler",
        about="Euler: the simplest solver of the denoising equation; fine at 20-30 steps.",
    ),
    "euler_a": SchedulerRecipe(
        "EulerAncestralDiscreteScheduler",
        about="Euler a(ncestral): adds fresh noise at every step, so the picture keeps "
        "changing as the step count changes.",
    ),
    "dpmpp_2m_karras": SchedulerRecipe(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
        about="DPM++ 2M Karras: a second-order multistep solver on Karras's noise levels; "
        "good pictures in 20-25 steps.",
    ),
    "ddim": SchedulerRecipe(
        "DDIMScheduler",
        about="DDIM: deterministic sampling (Song et al.), one of the three the course compares.",
    ),
    "pndm": SchedulerRecipe(
        "PNDMScheduler",
        {"skip_prk_steps": True},
        about="PNDM: pseudo-numerical methods; Stable Diffusion 1.x's own default.",
    ),
    "lms": SchedulerRecipe(
        "LMSDiscreteScheduler",
        about="K-LMS: Katherine Crowson's linear multistep solver (it needs scipy).",
    ),
}
assert SCHEDULER_RECIPES.keys() == SCHEDULERS.keys(), "every scheduler needs a recipe"
# FLUX.1 schnell runs its own flow-matching sampler, whatever the job's scheduler name says.
FLUX_SCHEDULER = SchedulerRecipe(
    "FlowMatchEulerDiscreteScheduler",
    about="FLUX.1's own sampler: Euler steps along the straight path (flow matching) from noise "
    "to picture; schnell was distilled to take 1-4 of them.",
)
# The diffusers class a script loads for each kind of job; the engine builds the same pipeline
# from a loaded one (``from_pipe``), with the same components and so the same pixels.
PIPELINE_CLASSES = {
    JobKind.TEXT_TO_IMAGE: "AutoPipelineForText2Image",
    JobKind.INPAINT: "AutoPipelineForInpainting",
    JobKind.IMAGE_TO_IMAGE: "AutoPipelineForImage2Image",
    JobKind.DEPTH_TO_IMAGE: "StableDiffusionDepth2ImgPipeline",
    JobKind.UPSCALE: "StableDiffusionUpscalePipeline",
}
WIDTH = 92  # the script's longest line
# Jobs whose whole picture is the starting point (no mask), noised to STRENGTH.
FROM_A_PICTURE = (JobKind.IMAGE_TO_IMAGE, JobKind.DEPTH_TO_IMAGE)


def script_name(job: Job) -> str:
    return f"recipe_job{job.id}.py"


def input_names(job: Job) -> tuple[str | None, str | None]:
    """File names the bot attaches next to a script whose job starts from a picture: picture,
    mask (inpainting)."""

    def name(ref: str | None, what: str) -> str | None:
        # Stored by content hash; the suffix says the format the user uploaded.
        return f"job{job.id}_{what}{PurePosixPath(ref).suffix or '.png'}" if ref else None

    return name(job.image_ref, "image"), name(job.mask_ref, "mask")


def _literal(value: object) -> str:
    """A Python literal for ``value``; strings in double quotes (JSON's are valid Python)."""
    if isinstance(value, str):
        # Characters that show nothing (bidi controls, zero-width ones) are written as escapes:
        # the string stays the one the engine used, and a reader sees every character of it,
        # so no reordering of the code around it can hide what the script does.
        return "".join(
            c if c.isprintable() else _escape(c) for c in json.dumps(value, ensure_ascii=False)
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _escape(character: str) -> str:
    """A Python escape for one character: ``\\u202e``, or ``\\U000e0067`` past the BMP."""
    code = ord(character)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _comment(text: str, indent: str = "") -> list[str]:
    """``text`` as comment lines that fit the script's width."""
    return textwrap.wrap(text, WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# ")


def _rule(title: str) -> str:
    return f"# --- {title} ".ljust(WIDTH, "-")


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "_", label.lower()).strip("_")


def _header(job: Job, outputs: str, hardware: str) -> list[str]:
    needs = "torch diffusers transformers accelerate compel==2.5.1"
    if "lms" in _scheduler_names(job):
        needs += " scipy"
    about = (
        f"It writes {outputs} next to itself: the very pixels the bot posted, on the same kind "
        f"of hardware as the bot's engine ({hardware}). Elsewhere (another GPU, or a CPU "
        "instead of a GPU) the picture is the same up to tiny differences in the last bits."
    )
    return [
        f'"""Recipe for job #{job.id} of the course\'s Stable Diffusion bot.',
        "",
        "Install (diffusers 0.42 or later):",
        f"    pip install {needs}",
        "Run:",
        f"    python {script_name(job)}",
        "",
        *textwrap.wrap(about, WIDTH),
        '"""',
        "",
    ]


def _scheduler_names(job: Job) -> list[str]:
    names = [v.scheduler for v in variants(job)] or [job.scheduler]
    return list(dict.fromkeys(names))


def _recipe_for(name: str, family: Family) -> SchedulerRecipe:
    return FLUX_SCHEDULER if family is Family.FLUX else SCHEDULER_RECIPES[name]


def _imports(job: Job, family: Family) -> list[str]:
    pipeline = PIPELINE_CLASSES[job.kind]
    schedulers = (_recipe_for(n, family).cls for n in _scheduler_names(job))
    classes = sorted({pipeline, *schedulers})
    names = ", ".join(classes)
    lines = ["import functools"] if decode_steps(job) else []
    if sdxl_embeddings := _sdxl_embeddings(job, family):
        lines.append("from pathlib import Path")
    lines = [*lines, "", "import torch"] if lines else ["import torch"]
    reader = "Compel, ReturnedEmbeddingsType" if family is Family.SDXL else "Compel"
    lines += [
        f"from compel import {reader}",
        "from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment",
    ]
    if len(names) + len("from diffusers import ") <= WIDTH:
        lines.append(f"from diffusers import {names}")
    else:
        lines += ["from diffusers import (", *(f"    {c}," for c in classes), ")"]
    if sdxl_embeddings:  # to read an SDXL embedding's two vector sets
        lines += [
            "from huggingface_hub import hf_hub_download",
            "from safetensors.torch import load_file",
        ]
    if job.kind == JobKind.INPAINT:
        lines.append("from PIL import Image, ImageFilter")
    elif job.kind in (*FROM_A_PICTURE, JobKind.UPSCALE):
        lines.append("from PIL import Image")
    return [*lines, ""]


def _model(job: Job, show_folder: bool) -> list[str]:
    """Where the script finds the weights: a Hub id as the bot ran it; a folder on the bot's
    server only for admins (``show_folder``), others get a line to fill in."""
    if is_folder_source(job.model_source) and not show_folder:
        return [
            *_comment(
                f"The bot ran the model {job.model_name!r} from a folder on its own server, not "
                "from the Hugging Face Hub. Put the path of your copy of it here (the course's "
                "admins can tell you where to get one)."
            ),
            f"MODEL = {_literal(job.model_name)}",
        ]
    return [
        "# A Hugging Face id (or a folder holding a diffusers pipeline) and the revision the bot",
        "# ran: a commit of the model's repository, so a later update cannot change the picture.",
        f"MODEL = {_literal(job.model_source)}",
    ]


def _settings(job: Job, show_folder: bool, family: Family) -> list[str]:
    revision = job.model_revision_used or job.model_revision
    lines = [
        _rule("The model"),
        *_model(job, show_folder),
        f"REVISION = {_literal(revision)}  # None: the latest",
        "",
        _rule("What to draw"),
        "# As typed, with the AUTOMATIC1111 web UI's weights: (word:1.3) makes a word 1.3 times",
        "# as strong, (word) 1.1 times, [word] 1/1.1 times; \\( is a bracket itself.",
        f"PROMPT = {_literal(job.prompt)}",
        "# Classifier-free guidance pushes away from this text instead of from an empty prompt.",
        f"NEGATIVE_PROMPT = {_literal(job.negative_prompt)}",
        "# The same prompts read into (text, weight) pieces, the way the bot read them.",
        f"PROMPT_PIECES = {_pieces(job.prompt)}",
        f"NEGATIVE_PIECES = {_pieces(job.negative_prompt)}",
        "",
        _rule("The settings"),
        "# Denoising steps: each one removes a little noise; past 25-50 little changes.",
        f"STEPS = {job.steps}",
        "# Guidance scale: how hard each step is pushed towards the prompt (0-1: no guidance,",
        "# 7-8.5: the usual middle, much higher: over-saturated).",
        f"GUIDANCE = {job.guidance!r}",
        "# Pixels, multiples of 8: the VAE works on latents 8 times smaller (512 px -> 64).",
        f"WIDTH, HEIGHT = {job.width}, {job.height}",
        "# One image per seed. The seed fixes the starting noise: same seed + same settings =",
        "# same image.",
        f"SEEDS = {_literal(list(job.seeds))}",
    ]
    if adapters := job.adapter_refs():
        lines += ["", *_adapters(adapters, show_folder, family)]
    if job.kind == JobKind.INPAINT:
        image, mask = input_names(job)
        lines += [
            "",
            _rule("Inpainting"),
            "# The picture to repaint and its mask (white = repaint). The bot attached them",
            "# next to this script.",
            f"IMAGE_FILE = {_literal(image)}",
        ]
        if mask:
            lines.append(f"MASK_FILE = {_literal(mask)}")
        else:
            words = _literal(job.mask_prompt or "")
            lines += [
                *_comment(
                    f"The bot made this job's mask from the words {words} with CLIPSeg and did "
                    "not keep it: paint your own mask.png (white = repaint) to run this."
                ),
                'MASK_FILE = "mask.png"',
            ]
        lines += [
            "# 1.0 repaints the masked area from pure noise; lower keeps more of the picture.",
            f"STRENGTH = {job.strength!r}",
        ]
        if job.mask_blend is not None:
            lines += [
                "# Outside the mask the result is your own picture again (the VAE would blur and",
                "# shift it a little), blended into the new part over this many pixels.",
                f"MASK_BLEND = {job.mask_blend!r}",
            ]
    if job.kind in FROM_A_PICTURE:
        image, _ = input_names(job)
        depth = job.kind == JobKind.DEPTH_TO_IMAGE
        lines += [
            "",
            _rule("Depth-to-image" if depth else "Image-to-image"),
            "# The picture to start from. The bot attached it next to this script.",
            f"IMAGE_FILE = {_literal(image)}",
            "# How far from the picture to go: its latents get the noise of the schedule at",
            "# step STEPS × (1 - STRENGTH), and only the last int(STEPS × STRENGTH) steps run.",
            "# Low keeps the picture close; 1.0 keeps only a faint trace of it.",
            *(
                [
                    "# Its depth (the pipeline's own estimator, DPT) conditions every step",
                    "# whatever the strength: the shapes stay where they are.",
                ]
                if depth
                else []
            ),
            f"STRENGTH = {job.strength!r}",
        ]
    if job.kind == JobKind.UPSCALE:
        image, _ = input_names(job)
        lines += [
            "",
            _rule("Upscale ×4"),
            "# The picture to upscale (WIDTH × HEIGHT; the result is four times its sides). The",
            "# bot attached it next to this script.",
            f"IMAGE_FILE = {_literal(image)}",
            "# Noise added to the picture before the upscaler redraws it (0 to 350): more noise,",
            "# more invented detail.",
            f"NOISE_LEVEL = {job.noise_level!r}",
        ]
    return [*lines, ""]


def _adapter_source(adapter: AdapterRef, show_folder: bool) -> str:
    """Where the script loads an adapter: a Hub id as it is; a path on the bot's server only
    for admins, others get the name to put their copy's path in place of."""
    if is_folder_source(adapter.source) and not show_folder:
        return _literal(f"path/to/your/copy/of/{adapter.name}.safetensors")
    return _literal(adapter.source)


def _adapters(adapters: tuple[AdapterRef, ...], show_folder: bool, family: Family) -> list[str]:
    loras = [a for a in adapters if a.kind is AdapterKind.LORA]
    embeddings = [a for a in adapters if a.kind is AdapterKind.EMBEDDING]
    denoiser = "transformer" if family is Family.FLUX else "UNet"
    lines = [
        _rule("LoRAs and embeddings"),
        *_comment(
            f"A LoRA adds small low-rank updates to the {denoiser}'s attention weights; the "
            "prompt's <lora:name:weight> says how strongly (0: not at all). The <lora:...> text "
            "itself is not read by the text encoder. An embedding is a new word for the text "
            "encoder: a learned vector under a token the prompt writes."
        ),
    ]
    if any(is_folder_source(a.source) for a in adapters) and not show_folder:
        lines += _comment(
            "The bot keeps some of these files on its own server: put the paths of your copies "
            "in their place (the course's admins can tell you where to get them)."
        )
    lines.append("# (name, Hugging Face id or .safetensors file or folder, weight)")
    lines.append("LORAS = [")
    lines += [
        f"    ({_literal(a.name)}, {_adapter_source(a, show_folder)}, {a.weight!r})" for a in loras
    ]
    lines += [
        "]",
        "# (token the prompt writes, Hugging Face id or .safetensors file)",
        "EMBEDDINGS = [",
    ]
    lines += [f"    ({_literal(a.token)}, {_adapter_source(a, show_folder)})" for a in embeddings]
    return [*lines, "]"]


_LOAD_EMBEDDINGS = """
# The adapters, loaded into the pipeline with diffusers' own calls, as the bot's engine does.
for token, source in EMBEDDINGS:
    pipe.load_textual_inversion(source, token=token, use_safetensors=True)
"""
# SDXL has two CLIP text encoders: its embeddings hold a vector set for each (clip_l, clip_g),
# loaded with one call per encoder, as diffusers' documentation and the bot's engine do.
_LOAD_SDXL_EMBEDDINGS = """
def embedding_vectors(source):
    \"\"\"An SDXL embedding's tensors: a .safetensors file, or learned_embeds.safetensors in a
    folder or a Hugging Face repository (where diffusers looks for an embedding).\"\"\"
    path = Path(source)
    if path.is_dir():
        path = path / "learned_embeds.safetensors"
    elif not path.is_file():
        path = hf_hub_download(source, "learned_embeds.safetensors")
    return load_file(path)


# The adapters, loaded into the pipeline with diffusers' own calls, as the bot's engine does.
for token, source in EMBEDDINGS:
    vectors = embedding_vectors(source)
    for key, encoder, tokenizer in (
        ("clip_l", pipe.text_encoder, pipe.tokenizer),
        ("clip_g", pipe.text_encoder_2, pipe.tokenizer_2),
    ):
        pipe.load_textual_inversion(
            vectors[key], token=token, text_encoder=encoder, tokenizer=tokenizer
        )
"""
# diffusers' loader knows where each family's LoRA goes: the UNet, or FLUX.1's transformer.
_LOAD_LORAS = """
for name, source, _ in LORAS:
    pipe.load_lora_weights(source, adapter_name=name, use_safetensors=True)
if LORAS:
    pipe.set_adapters([name for name, _, _ in LORAS], [weight for _, _, weight in LORAS])
"""


def _sdxl_embeddings(job: Job, family: Family) -> bool:
    """Whether the script reads SDXL embeddings' two vector sets itself."""
    return family is Family.SDXL and any(
        a.kind is AdapterKind.EMBEDDING for a in job.adapter_refs()
    )


def _load_adapters(job: Job, family: Family) -> list[str]:
    if not job.adapter_refs():
        return []
    embeddings = _LOAD_SDXL_EMBEDDINGS if _sdxl_embeddings(job, family) else _LOAD_EMBEDDINGS
    return (embeddings + _LOAD_LORAS.lstrip("\n")).rstrip("\n").splitlines()


def _pieces(prompt: str) -> str:
    """A prompt's (text, weight) pieces as a Python literal (``engine.prompt_syntax``)."""
    try:
        pieces = [(p.text, p.weight) for p in parse(prompt)]
    except PromptSyntaxError:
        # A job stored before prompts had weights (an unclosed bracket was text then): the
        # engine ran the text as it is.
        pieces = [(prompt, 1.0)]
    return "[" + ", ".join(f"({_literal(text)}, {weight!r})" for text, weight in pieces) + "]"


_FITS_AS_TEXT = '''

def fits_as_text(pieces):
    """No weights and one window: the pipeline encodes the text itself, as it always did."""
    text = "".join(text for text, _ in pieces)
    tokens = len(pipe.tokenizer(text).input_ids)
    return all(weight == 1 for _, weight in pieces) and tokens <= pipe.tokenizer.model_max_length
'''

# The start of prompt_arguments in every family compel reads: the text when it can go as text,
# else compel's embeddings of both prompts, padded to one length as the family's end says.
_PROMPT_ARGUMENTS_START = '''

def prompt_arguments(pieces, negative_pieces):
    """The pipeline's prompt arguments: the text, or compel's embeddings."""
    if fits_as_text(pieces) and fits_as_text(negative_pieces):
        return {
            "prompt": "".join(text for text, _ in pieces),
            "negative_prompt": "".join(text for text, _ in negative_pieces),
        }
    with torch.no_grad():
        # Both the same length: the shorter is padded with windows of the empty prompt.
'''


def _compel_prompt_arguments(encoders: str, padded: str) -> str:
    """A compel family's prompt code: ``encoders`` sets compel up and defines ``embeddings``
    (and what else the family reads), then ``fits_as_text`` and ``prompt_arguments``, whose
    ending ``padded`` makes the family's embeddings of both prompts. Each script holds it all
    written out: a script stands alone, importing nothing of the bot's."""
    return encoders + _FITS_AS_TEXT + _PROMPT_ARGUMENTS_START + padded


_PROMPT_ARGUMENTS = _compel_prompt_arguments(
    encoders='''
# CLIP's text encoder reads 77 tokens at a time (75 of them words). compel scales each token's
# embedding by its weight and reads a longer prompt in windows of 75 tokens, joined.
compel = Compel(
    tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, truncate_long_prompts=False
)


def embeddings(pieces):
    """The prompt's embeddings, each piece's tokens weighted, in as many windows as needed."""
    fragments = [Fragment(text, weight) for text, weight in pieces]
    conjunction = Conjunction([FlattenedPrompt(fragments)])
    return compel.build_conditioning_tensor_for_conjunction(conjunction)[0]
''',
    padded="""        positive, negative = compel.pad_conditioning_tensors_to_same_length(
            [embeddings(pieces), embeddings(negative_pieces)]
        )
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative}
""",
)

_SDXL_PROMPT_ARGUMENTS = _compel_prompt_arguments(
    encoders='''
# SDXL reads a prompt with two CLIP text encoders side by side, 77 tokens at a time (75 of
# them words). One compel per encoder scales each token's embedding by its weight and reads a
# longer prompt in windows of 75 tokens, joined; both take the encoder's second-to-last layer,
# as diffusers does for SDXL.
compels = [
    Compel(
        tokenizer=tokenizer,
        text_encoder=encoder,
        returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
        truncate_long_prompts=False,
    )
    for tokenizer, encoder in (
        (pipe.tokenizer, pipe.text_encoder),
        (pipe.tokenizer_2, pipe.text_encoder_2),
    )
]


def embeddings(pieces):
    """Both encoders' embeddings of the prompt, weighted, in windows, side by side."""
    fragments = [Fragment(text, weight) for text, weight in pieces]
    conjunction = Conjunction([FlattenedPrompt(fragments)])
    return torch.cat(
        [c.build_conditioning_tensor_for_conjunction(conjunction)[0] for c in compels], dim=-1
    )


def pooled(pieces):
    """The second encoder's one-vector summary of the words, as diffusers makes it from
    text: unweighted, and of the first window only."""
    text = "".join(text for text, _ in pieces)
    return compels[1].conditioning_provider.get_pooled_embeddings([text])
''',
    padded="""        empty = torch.cat([c.conditioning_provider.empty_z for c in compels], dim=-1)
        positive, negative = compels[0].pad_conditioning_tensors_to_same_length(
            [embeddings(pieces), embeddings(negative_pieces)], empty
        )
        return {
            "prompt_embeds": positive,
            "negative_prompt_embeds": negative,
            "pooled_prompt_embeds": pooled(pieces),
            "negative_pooled_prompt_embeds": pooled(negative_pieces),
        }
""",
)


# FLUX.1 reads prompts as text (the bot refuses weights for it, and prompts past the 256 tokens
# its T5 encoder reads); it takes no negative prompt.
_FAMILY_PROMPT_ARGUMENTS = {
    Family.SDXL: _SDXL_PROMPT_ARGUMENTS,
    Family.FLUX: f'''
def prompt_arguments(pieces, negative_pieces):
    """The pipeline's prompt arguments: FLUX.1 reads the text with CLIP and T5, and takes no
    negative prompt (it is guidance-distilled: one pass per step, nothing to push away from)."""
    return {{
        "prompt": "".join(text for text, _ in pieces),
        "max_sequence_length": {FLUX_MAX_SEQUENCE_LENGTH},
    }}
''',
}


def _scheduler_factory(job: Job, family: Family) -> list[str]:
    lines = [
        "",
        "def make_scheduler(name, config):",
        '    """A fresh scheduler of the named kind, from the model\'s own scheduler config.',
        "",
        "    The config is the noise schedule the model was trained with (beta_start,",
        "    beta_end, ...): only the way of taking the steps changes.",
        '    """',
    ]
    for name in _scheduler_names(job):
        recipe = _recipe_for(name, family)
        lines += [f"    if name == {_literal(name)}:", *_comment(recipe.about, " " * 8)]
        if recipe.options:
            options = [
                f"            {key}={_literal(value)}," for key, value in recipe.options.items()
            ]
            lines += [
                f"        return {recipe.cls}.from_config(",
                "            config,",
                *options,
                "        )",
            ]
        else:
            lines.append(f"        return {recipe.cls}.from_config(config)")
    lines += ['    raise ValueError(f"no recipe for scheduler {name!r}")', "", ""]
    return lines


_HARDWARE = [
    _rule("The hardware"),
    'DEVICE = "cuda" if torch.cuda.is_available() else "cpu"',
    'if DEVICE == "cpu":',
    "    # Exact pixels on a CPU: the bot's engine turns off two convolution libraries",
    "    # (oneDNN and NNPACK) because they choose their arithmetic by batch size, and the",
    "    # engine makes images in batches. PyTorch's own convolutions compute each image",
    "    # alone, so with the libraries off here too the bits are the same. It only costs speed.",
    "    torch.backends.mkldnn.enabled = False",
    "    torch.backends.nnpack.set_flags(False)",
    "",
]


def _load(job: Job, gpu_dtype: str, family: Family) -> list[str]:
    pipeline = PIPELINE_CLASSES[job.kind]
    what = {
        Family.SD: "text encoder (CLIP), UNet, VAE and tokenizer",
        Family.SDXL: "SDXL's two text encoders (CLIP), UNet, VAE and tokenizers",
        Family.FLUX: "FLUX.1's text encoders (CLIP and T5), transformer, VAE and tokenizers",
    }[family]
    if job.kind == JobKind.DEPTH_TO_IMAGE:
        what += " and depth estimator (DPT)"
    prompts = _FAMILY_PROMPT_ARGUMENTS.get(family, _PROMPT_ARGUMENTS)
    lines = [
        "# Half precision on a GPU, as the bot's engine runs there; full precision on a CPU.",
        f'DTYPE = torch.{gpu_dtype} if DEVICE == "cuda" else torch.float32',
        "",
        *_comment(
            f"The pipeline ({FAMILIES[family].label}, named in the folder's model_index.json): "
            f"{what}, from one folder. A safety checker, where the model has one, stays on "
            "and blacks out what it flags (the bot blurs those instead). safetensors only: a "
            "pickled .bin file can run code when it is loaded."
        ),
        f"pipe = {pipeline}.from_pretrained(",
        "    MODEL, revision=REVISION, dtype=DTYPE, use_safetensors=True",
        ")",
        "pipe = pipe.to(DEVICE)",
        "pipe.set_progress_bar_config(disable=True)",
        "# Kept before any change: building from a changed config would carry its options along.",
        "BASE_SCHEDULER_CONFIG = pipe.scheduler.config",
        *_load_adapters(job, family),
        *prompts.rstrip("\n").splitlines(),
        "",
        "",
    ]
    if job.kind == JobKind.INPAINT:
        lines += [
            "# Both are brought to the job's size the way the bot does it.",
            'image = Image.open(IMAGE_FILE).convert("RGB")',
            "if image.size != (WIDTH, HEIGHT):",
            "    image = image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)",
            'mask = Image.open(MASK_FILE).convert("L")',
            "if mask.size != (WIDTH, HEIGHT):",
            "    mask = mask.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)",
        ]
        if job.mask_blend is not None:
            lines += [
                "# The mask's edge softened: a box blur, so nothing farther than MASK_BLEND",
                "# pixels from the mask changes at all.",
                "soft_mask = mask.filter(ImageFilter.BoxBlur(MASK_BLEND)) if MASK_BLEND else mask",
            ]
        lines.append("")
    if job.kind == JobKind.UPSCALE:
        lines += [
            "# The VAE decodes four times the picture's sides in overlapping tiles, as the bot's",
            "# engine does: a 2048² decode in one piece needs far more memory (and the tiles'",
            "# blending is part of the pixels).",
            "pipe.vae.enable_tiling()",
        ]
    if job.kind in (*FROM_A_PICTURE, JobKind.UPSCALE):
        lines += [
            "# The picture at the job's size, brought there the way the bot does it.",
            'image = Image.open(IMAGE_FILE).convert("RGB")',
            "if image.size != (WIDTH, HEIGHT):",
            "    image = image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)",
            "",
        ]
    return lines


def _generate(
    job: Job,
    steps: str,
    guidance: str,
    extra: str = "",
    strength: str = "STRENGTH",
    family: Family = Family.SD,
) -> list[str]:
    """The pipeline call for one seed, as lines indented for a loop body."""
    size = ["width=WIDTH,", "height=HEIGHT,"]
    pictures = []
    if job.kind == JobKind.INPAINT:
        pictures = ["image=image,", "mask_image=mask,", f"strength={strength},"]
    elif job.kind in FROM_A_PICTURE:
        if family is not Family.FLUX:  # FLUX.1's pipeline would make 1024x1024 without them
            size = []  # the picture's own size
        pictures = ["image=image,", f"strength={strength},"]
    elif job.kind == JobKind.UPSCALE:
        size = []  # four times the picture's
        pictures = ["image=image,", "noise_level=NOISE_LEVEL,"]
    # A guidance-distilled family takes no guidance scale.
    guided = [] if FAMILIES[family].guidance is None else [f"guidance_scale={guidance},"]
    arguments = [
        "**prompt_args,",
        f"num_inference_steps={steps},",
        *guided,
        *size,
        *pictures,
        "generator=generator,",
        *([extra] if extra else []),
    ]
    return [
        "    # A CPU generator, as the bot uses: then a seed gives the same noise everywhere.",
        '    generator = torch.Generator("cpu").manual_seed(seed)',
        "    picture = pipe(",
        *(f"        {argument}" for argument in arguments),
        "    ).images[0]",
        *(
            ["    picture = Image.composite(picture, image, soft_mask)  # your pixels outside"]
            if job.kind == JobKind.INPAINT and job.mask_blend is not None
            else []
        ),
    ]


def _plain(job: Job, family: Family) -> list[str]:
    return [
        f"pipe.scheduler = make_scheduler({_literal(job.scheduler)}, BASE_SCHEDULER_CONFIG)",
        "prompt_args = prompt_arguments(PROMPT_PIECES, NEGATIVE_PIECES)",
        "for seed in SEEDS:",
        *_generate(job, "STEPS", "GUIDANCE", family=family),
        f'    picture.save(f"job{job.id}_{{seed}}.png")',
        f'    print(f"wrote job{job.id}_{{seed}}.png")',
    ]


def _cfg_zero(family: Family, indent: str) -> list[str]:
    """The course's CFG 0 as the engine runs it (``engine.run.comparisons.run_spec``); a family
    without guidance stores 0 for "none" and runs its panels as they are."""
    if FAMILIES[family].guidance is None:
        return []
    return [
        f"{indent}if guidance == 0:",
        f"{indent}    # CFG 0 is the unconditional prediction alone "
        "(uncond + 0 * (text - uncond)).",
        f"{indent}    # diffusers guides only above 1, so run the unconditional text, the negative",
        f"{indent}    # prompt, without guidance: the same prediction.",
        f'{indent}    prompt_args = prompt_arguments(NEGATIVE_PIECES, [("", 1.0)])',
        f"{indent}    guidance = 1.0",
    ]


def _panels(job: Job, family: Family) -> list[str]:
    rows = [
        f"    ({_literal(v.label)}, {v.guidance!r}, {v.steps!r}, {_literal(v.scheduler)}, "
        f"{_literal(_slug(v.label))}),"
        for v in variants(job)
    ]
    return [
        _rule(f"The comparison: {job.comparison}"),
        "# The same seed for every panel, so the panels differ only by the setting that varies.",
        "PANELS = [",
        "    # (label, guidance, steps, scheduler, file name part)",
        *rows,
        "]",
        "for label, guidance, steps, scheduler, part in PANELS:",
        "    pipe.scheduler = make_scheduler(scheduler, BASE_SCHEDULER_CONFIG)",
        "    prompt_args = prompt_arguments(PROMPT_PIECES, NEGATIVE_PIECES)",
        *_cfg_zero(family, "    "),
        "    for seed in SEEDS:",
        *("    " + line for line in _generate(job, "steps", "guidance", family=family)),
        f'        picture.save(f"job{job.id}_{{part}}_{{seed}}.png")',
        f'        print(f"wrote job{job.id}_{{part}}_{{seed}}.png ({{label}})")',
    ]


_OTHER_MODELS = """
# The grid's other models, each loaded once, as the first one was, with its own text encoder
# for the prompt and its own scheduler settings to start from.
LOADED = {(MODEL, REVISION): (pipe, BASE_SCHEDULER_CONFIG, {own_reader})}


def load(model, revision):
    if (model, revision) not in LOADED:
        other = {pipeline}.from_pretrained(
            model, revision=revision, dtype=DTYPE, use_safetensors=True
        ).to(DEVICE)
        other.set_progress_bar_config(disable=True)
        {reader}
        LOADED[(model, revision)] = (other, other.scheduler.config, reader)
    return LOADED[(model, revision)]
"""


# What reads a grid's other model's prompt: compel for SD 1.x/2.x (its weights); SDXL and
# FLUX.1 read the text themselves (``prompt_arguments`` uses no reader).
_COMPEL_READER = """reader = Compel(
            tokenizer=other.tokenizer, text_encoder=other.text_encoder, truncate_long_prompts=False
        )"""
_NO_READER = "reader = None  # the pipeline reads the prompt's text itself"


def _grid_panels(job: Job, show_folder: bool, family: Family) -> list[str]:
    """A /compare grid: every panel's settings, row by row, each from its own seed (the job's,
    unless the seed is an axis) and on its own model (all of ``family``)."""

    def model_source(model: ModelRef) -> str:
        hidden = is_folder_source(model.source) and not show_folder
        return _literal(model.name if hidden else model.source)

    rows = []
    for v in variants(job):
        seed = v.seed if v.seed is not None else job.seeds[0]
        strength = v.strength if v.strength is not None else job.strength
        model = v.model or ModelRef(job.model_name, "", None)
        source = model_source(model) if v.model else "MODEL"
        revision = _literal(model.revision) if v.model else "REVISION"
        rows.append(
            f"    ({_literal(v.label)}, {v.guidance!r}, {v.steps!r}, {_literal(v.scheduler)}, "
            f"{seed!r}, {strength!r}, {source}, {revision}, {_literal(_slug(v.label))}),"
        )
    pipeline = PIPELINE_CLASSES[job.kind]
    return [
        _rule("The X/Y grid"),
        *_comment(
            "One panel per value of the x axis (across) and of the y axis (down). Panels that "
            "do not vary the seed share the job's, so they differ only by what the axes vary."
        ),
        *_OTHER_MODELS.replace("{pipeline}", pipeline)
        .replace("{reader}", _COMPEL_READER if family is Family.SD else _NO_READER)
        .replace("{own_reader}", "compel" if family is Family.SD else "None")
        .strip("\n")
        .splitlines(),
        "",
        "",
        "PANELS = [",
        "    # (label, guidance, steps, scheduler, seed, strength, model, revision, file part)",
        *rows,
        "]",
        "for label, guidance, steps, scheduler, seed, strength, model, revision, part in PANELS:",
        "    pipe, BASE_SCHEDULER_CONFIG, compel = load(model, revision)",
        "    pipe.scheduler = make_scheduler(scheduler, BASE_SCHEDULER_CONFIG)",
        "    prompt_args = prompt_arguments(PROMPT_PIECES, NEGATIVE_PIECES)",
        *_cfg_zero(family, "    "),
        *_generate(job, "steps", "guidance", strength="strength", family=family),
        f'    picture.save(f"job{job.id}_{{part}}.png")',
        f'    print(f"wrote job{job.id}_{{part}}.png ({{label}})")',
    ]


_PREDICTED_CLEAN = '''
def predicted_clean(scheduler, output, noise, timestep, sample):
    """The scheduler's guess of the clean latents (x0) at the step it just took."""
    if len(output) > 1:  # Euler, Euler a, LMS and DDIM return it next to the new sample
        return output[1]
    history = getattr(scheduler, "model_outputs", None)
    if getattr(scheduler.config, "algorithm_type", "") in ("dpmsolver++", "sde-dpmsolver++"):
        return history[-1]  # DPM-Solver++ works with x0 predictions and keeps the latest
    if getattr(scheduler, "alphas_cumprod", None) is None:
        # Flow matching (FLUX.1): x_t = (1 - sigma) * x0 + sigma * noise and the model predicts
        # v = noise - x0, so x0 = x_t - sigma * v at the step just taken.
        sigma = scheduler.sigmas[scheduler.step_index - 1].to(sample.device, torch.float32)
        return (sample.float() - sigma * noise.float()).to(sample.dtype)
    # PNDM says nothing: x_t = sqrt(a) * x0 + sqrt(1 - a) * noise, solved for x0.
    a = scheduler.alphas_cumprod[int(timestep)].to(sample.device, torch.float32)
    clean = (sample.float() - (1 - a).sqrt() * noise.float()) / a.sqrt()
    return clean.to(sample.dtype)

'''

# Latents to a picture, as each family's pipeline decodes its own result.
_DECODE = {
    Family.SD: '''
def decode(latents):
    """Latents to a picture, as the pipeline decodes its own result."""
    vae = pipe.vae
    with torch.no_grad():
        scaled = (latents / vae.config.scaling_factor).to(vae.dtype)
        pixels = vae.decode(scaled, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels, output_type="pil")[0]
''',
    Family.SDXL: '''
def decode(latents):
    """Latents to a picture, as SDXL's pipeline decodes its own result: its VAE overflows in
    float16, so it decodes in float32 where its config says force_upcast."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and vae.config.force_upcast
    if upcast:
        vae.to(dtype=torch.float32)
    with torch.no_grad():
        scaled = (latents / vae.config.scaling_factor).to(vae.dtype)
        pixels = vae.decode(scaled, return_dict=False)[0]
    if upcast:
        vae.to(dtype=torch.float16)
    if getattr(pipe, "watermark", None) is not None:
        pixels = pipe.watermark.apply_watermark(pixels)
    return pipe.image_processor.postprocess(pixels, output_type="pil")[0]
''',
    Family.FLUX: '''
def decode(latents):
    """Latents to a picture, as FLUX.1's pipeline decodes its own result: unpacked from its
    2x2 patches of 16 channels, unscaled and shifted."""
    vae = pipe.vae
    with torch.no_grad():
        latents = pipe._unpack_latents(latents, HEIGHT, WIDTH, pipe.vae_scale_factor)
        scaled = (latents / vae.config.scaling_factor + vae.config.shift_factor).to(vae.dtype)
        pixels = vae.decode(scaled, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels, output_type="pil")[0]
''',
}


def _strip(job: Job, family: Family) -> list[str]:
    steps = decode_steps(job)
    last = denoising_steps(job)
    return [
        _rule("The denoising strip"),
        "# At every step the scheduler also predicts the finished, clean latents (x0). Decoding",
        "# them with the VAE shows what the model 'sees' at that step of the run.",
        f"SHOW_STEPS = {_literal(list(steps))}",
        f"LAST_STEP = {last}  # the run's last step: its picture is the finished image",
        *_PREDICTED_CLEAN.strip("\n").splitlines(),
        "",
        "",
        *_DECODE[family].strip("\n").splitlines(),
        "",
        "",
        f"pipe.scheduler = make_scheduler({_literal(job.scheduler)}, BASE_SCHEDULER_CONFIG)",
        "latest, kept = {}, {}",
        "take_step = pipe.scheduler.step",
        "",
        "",
        "# functools.wraps keeps step's signature, which the pipeline reads to decide whether",
        "# to hand it the generator (Euler a draws its fresh noise from it).",
        "@functools.wraps(take_step)",
        "def step_and_predict(noise, timestep, sample, *args, **kwargs):",
        "    output = take_step(noise, timestep, sample, *args, **kwargs)",
        '    latest["x0"] = predicted_clean(pipe.scheduler, output, noise, timestep, sample)',
        "    return output",
        "",
        "",
        "def keep(pipeline, step_index, timestep, tensors):",
        "    # diffusers calls this after every step (step_index counts from 0).",
        "    if step_index + 1 in SHOW_STEPS:",
        '        kept[step_index + 1] = latest["x0"].clone()',
        "    return {}",
        "",
        "",
        "pipe.scheduler.step = step_and_predict",
        "prompt_args = prompt_arguments(PROMPT_PIECES, NEGATIVE_PIECES)",
        "for seed in SEEDS:",
        "    kept.clear()",
        *_generate(job, "STEPS", "GUIDANCE", "callback_on_step_end=keep,", family=family),
        "    for step in SHOW_STEPS:",
        "        shown = picture if step >= LAST_STEP else decode(kept[step])",
        f'        shown.save(f"job{job.id}_step{{step}}_{{seed}}.png")',
        f'        print(f"wrote job{job.id}_step{{step}}_{{seed}}.png")',
    ]


def render_script(
    job: Job,
    *,
    engine_device: str | None = None,
    gpu_dtype: str = "float16",
    show_folder: bool = False,
    family: Family = Family.SD,
) -> str:
    """The recipe script for ``job``; ``engine_device``/``gpu_dtype``: what the engine runs on;
    ``show_folder``: the reader is an admin, who may see a local model folder's path;
    ``family``: its model's (and every model's of a grid's model axis: one family)."""
    hardware = engine_device or "a CUDA GPU at float16, or a CPU"
    if is_grid(job):
        outputs = "one PNG per panel of the grid"
        body = _grid_panels(job, show_folder, family)
    elif variants(job):
        outputs = "one PNG per panel (and seed)"
        body = _panels(job, family)
    elif decode_steps(job):
        outputs = "one PNG per step shown (and seed)"
        body = _strip(job, family)
    else:
        outputs = f"job{job.id}_<seed>.png for each seed"
        body = _plain(job, family)
    lines = [
        *_header(job, outputs, hardware),
        *_imports(job, family),
        *_settings(job, show_folder, family),
        *_scheduler_factory(job, family),
        *_HARDWARE,
        *_load(job, gpu_dtype, family),
        *body,
    ]
    return "\n".join(lines) + "\n"
