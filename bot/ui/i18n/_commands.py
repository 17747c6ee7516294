"""The slash commands in Simplified Chinese: one entry per command, keyed by its full name.

Each entry gives the command's (or group's) name and description, each option's name and
description keyed by the option's Python name, and its choices keyed by value. Discord's rules
for names: lowercase, 1-32 letters (any script), digits, ``-`` or ``_``; descriptions and choice
names up to 100 characters. ``tests/bot/test_i18n.py`` checks both, and that every command the
bot registers has an entry.

Terms follow the course's Chinese material: 提示词 (prompt), 无分类器引导 (classifier-free
guidance), 去噪步数 (denoising steps), 调度器 (scheduler), 种子 (seed).

Ranges and defaults are never written out here: the descriptions of bounded options hold
``{min}``, ``{max}`` and ``{default}``, which the translator fills from the option itself (the
operator's narrowed bounds, ``bot.ui.options``); the rest comes from ``engine.protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from engine.protocol import BOUNDS, FAMILIES, SCHEDULERS, SIZES, Family, number_text, size_label

_MODEL_NAME = ("名称", "模型在机器人中的名称（见 /models-list）")
# What each size is called; its pixels come from SIZES.
_SIZE_SHAPES = {
    "square": "正方形",
    "landscape": "横向 3:2",
    "portrait": "纵向 2:3",
    "wide": "宽屏 16:9",
    "tall": "竖屏 9:16",
}
_SIZE_CHOICES = {key: size_label(SIZES[key], shape, "，") for key, shape in _SIZE_SHAPES.items()}
_FLUX = FAMILIES[Family.FLUX]
_FLUX_STEPS = f"{_FLUX.label} 为 {_FLUX.steps.min}-{_FLUX.steps.max}，默认 {_FLUX.steps.default}"
_MEGAPIXEL = FAMILIES[Family.SDXL].sizes[BOUNDS.size]  # FLUX.1's too
_DEFAULT_SCHEDULER = SCHEDULERS[BOUNDS.scheduler]
_WHICH_MODEL = "使用哪个{kind}模型（默认：服务器的默认模型）"
# The options that mean the same in every image command: the zh-CN side of
# ``bot.ui.options.OPTION_HELP``, with the same keys (a command that shares an option's English
# help shares its zh-CN one; tests/bot/ui/test_i18n.py checks it).
SHARED_OPTIONS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "prompt": ("提示词", "要画什么，例如“雪中的水彩狐狸”"),
        "negative_prompt": ("反向提示词", "想避开什么，例如“模糊、文字”"),
        "seed": ("种子", "相同种子 + 相同设置 = 相同图像（留空则随机）"),
        "steps": ("步数", "去噪步数，{min}-{max}（默认 {default}）"),
        "guidance": ("引导系数", "无分类器引导：多大程度上遵循提示词（默认 {default}）"),
        "size": ("尺寸", "图像的大小和形状"),
        "model": ("模型", _WHICH_MODEL.format(kind="")),
    }
)


def _shared(*names: str) -> dict[str, tuple[str, str]]:
    """The shared texts of the options named, for a command's ``options``."""
    return {name: SHARED_OPTIONS[name] for name in names}


def _with_note(name: str, note: str) -> tuple[str, str]:
    """A shared option with a command's own ``note`` inside the brackets its text ends with, or
    in new ones (as ``bot.ui.options.with_note`` says it in English)."""
    option, text = SHARED_OPTIONS[name]
    if text.endswith("）"):
        return option, f"{text[:-1]}；{note}）"
    return option, f"{text}（{note}）"


def _model(kind: str) -> tuple[str, str]:
    """The ``model`` option of a command that runs one kind of model."""
    return SHARED_OPTIONS["model"][0], _WHICH_MODEL.format(kind=kind)


@dataclass(frozen=True)
class CommandText:
    """One command's (or group's) texts in one language."""

    name: str
    description: str
    options: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name, description
    choices: Mapping[str, str] = field(default_factory=dict)  # choice value -> its label


ZH_CN: dict[str, CommandText] = {
    "imagine": CommandText(
        "生成图像",
        "根据文字提示生成图像，或以一张图片为起点",
        options={
            **_shared("prompt", "negative_prompt", "seed", "model"),
            # What /imagine says beyond the shared help: it runs every family.
            "steps": (
                SHARED_OPTIONS["steps"][0],
                SHARED_OPTIONS["steps"][1] + f"；{_FLUX_STEPS}；越多越慢",
            ),
            "guidance": _with_note("guidance", "常用 7-8.5"),
            "size": _with_note(
                "size",
                f"SDXL 与 FLUX.1 模型：同样形状，约 {_MEGAPIXEL.width}×{_MEGAPIXEL.height}",
            ),
            "scheduler": ("调度器", f"执行去噪步骤的采样器（默认 {_DEFAULT_SCHEDULER}）"),
            "count": ("数量", "生成几张，{min}-{max}，种子依次加一"),
            "image": ("图像", "作为起点的图片（PNG、JPEG 或 WebP）；它的形状决定尺寸"),
            "strength": (
                "强度",
                "有图像时：离它多远，{min}-{max}"
                f"（默认 {number_text(BOUNDS.image_strength.default)}）；越低越接近原图",
            ),
            "loras": (
                "lora",
                "要应用的 LoRA：名称:0.8, 另一个:0.5（也可在提示词中写 <lora:名称:0.8>）",
            ),
        },
        choices={
            **_SIZE_CHOICES,
            # Scheduler names are proper names; the same in every language.
            "euler": "Euler",
            "euler_a": "Euler a（祖先采样）",
            "dpmpp_2m_karras": "DPM++ 2M Karras",
            "ddim": "DDIM",
            "pndm": "PNDM",
            "lms": "LMS（K-LMS）",
        },
    ),
    "compare": CommandText(
        "对比",
        "X/Y 对比图：同一个提示词，在一两个设置的多个取值下并排比较",
        # The settings that can be an axis say so: their help is /compare's own.
        options={
            **_shared("prompt", "negative_prompt", "size"),
            "x": ("横轴", "横向变化的设置"),
            "x_values": ("横轴取值", "它的取值，用逗号分隔，例如“3, 7.5, 12”或“Euler, DDIM”"),
            "y": ("纵轴", "第二个设置，纵向变化"),
            "y_values": ("纵轴取值", "它的取值，用逗号分隔"),
            "seed": ("种子", "每一格的种子（留空则随机），种子是坐标轴时除外"),
            "steps": ("步数", "步数不是坐标轴时的去噪步数，{min}-{max}（默认与 /imagine 相同）"),
            "guidance": ("引导系数", "引导系数不是坐标轴时的取值（默认与 /imagine 相同）"),
            "scheduler": ("调度器", "调度器不是坐标轴时使用的采样器（默认与 /imagine 相同）"),
            "model": ("模型", "模型不是坐标轴时使用的模型（默认：服务器的默认模型）"),
            "image": ("图像", "作为起点的图片（PNG、JPEG 或 WebP）：图生图对比"),
            "strength": (
                "强度",
                "有图像且强度不是坐标轴时：离它多远"
                f"（默认 {number_text(BOUNDS.image_strength.default)}）",
            ),
        },
        choices={
            "guidance": "引导系数",
            "steps": "步数",
            "scheduler": "调度器",
            "seed": "种子",
            "strength": "强度（需要图像）",
            "model": "模型",
        },
    ),
    "inpaint": CommandText(
        "局部重绘",
        "根据提示词重绘图像的一部分",
        options={
            "image": ("图像", "要修改的图片（PNG、JPEG 或 WebP）；透明区域会被重绘"),
            "prompt": ("提示词", "要在该区域画什么，例如“一把红伞”"),
            "mask": ("蒙版", "同样形状的黑白图片：白色 = 重绘，黑色 = 保留"),
            "mask_prompt": ("蒙版描述", "或者用文字指明区域，例如“背景”“那只狗”"),
            **_shared("negative_prompt", "seed", "steps", "guidance"),
            "strength": ("强度", "该区域改变多少，最大为 {max}（默认 {default}：从头重绘）"),
            "model": _model("局部重绘"),
        },
    ),
    "depth": CommandText(
        "深度生图",
        "按一张图片的形状（它的深度）生成新图像",
        options={
            "image": ("图像", "要保留其深度的图片（PNG、JPEG 或 WebP）；它的形状决定尺寸"),
            "prompt": ("提示词", "要把它变成什么，例如“博物馆里的大理石雕像”"),
            **_shared("negative_prompt", "seed", "steps", "guidance"),
            "strength": (
                "强度",
                "离图片的颜色多远，{min}-{max}"
                f"（默认 {number_text(BOUNDS.image_strength.default)}）；深度始终保留",
            ),
            "model": _model("深度"),
        },
    ),
    "reroll": CommandText(
        "重新生成",
        "用新的或指定的种子重新生成一个任务",
        options={
            "job": (
                "任务",
                "哪个任务（默认：你最近的）；输入以搜索你的任务，或填写本频道任意任务编号",
            ),
            "seed": ("种子", "留空：新的随机种子。使用任务自己的种子会得到完全相同的图像"),
        },
    ),
    "history": CommandText("历史记录", "你最近的任务，附种子和链接"),
    "recipe": CommandText(
        "复现脚本",
        "获取一个用 diffusers 逐像素复现某个任务的 Python 脚本",
        options={"job": ("任务", "任务编号（结果下方的 #编号）")},
    ),
    "models-list": CommandText("模型列表", "可用的模型，以及哪些已加载"),
    "models-suggest": CommandText(
        "推荐模型",
        "推荐一个模型（例如你的 DreamBooth 模型）给机器人",
        options={
            "source": (
                "来源",
                "diffusers 流水线的 Hugging Face id（组织/名称），或机器人所在机器上的文件夹",
            ),
            "name": ("名称", "大家选择它时用的短名称（默认：来源的最后一部分）"),
        },
    ),
    "models": CommandText("模型", "管理员：机器人提供的模型"),
    "models add": CommandText(
        "添加",
        "管理员：提供一个新模型",
        options={
            "name": ("名称", "大家选择它时用的短名称（字母、数字、. _ -）"),
            "source": (
                "来源",
                "Hugging Face 上的 id（组织/名称）或本地 diffusers 文件夹的完整路径"
                "（LoRA 或嵌入：也可以是 .safetensors 文件）",
            ),
            "kind": ("类型", "它是什么：文生图、局部重绘、深度生图或放大（×4）模型，LoRA 或嵌入"),
            "revision": ("版本", "仅限 Hugging Face：分支、标签或提交（默认：main）"),
            "family": ("系列", "LoRA 或嵌入：适用的模型系列（默认 Stable Diffusion 1.x）"),
            "token": ("词元", "嵌入：提示词中代表它的词（默认 <名称>）"),
        },
        choices={
            "text_to_image": "文生图",
            "inpaint": "局部重绘",
            "depth_to_image": "深度生图",
            "upscale": "放大器",
            "lora": "LoRA",
            "embedding": "嵌入（textual inversion）",
            "sd": "Stable Diffusion 1.x/2.x",
            "sdxl": "SDXL",
            "flux": "FLUX.1 schnell",
        },
    ),
    "models default": CommandText(
        "默认",
        "管理员：未指定模型时使用的模型",
        options={"name": _MODEL_NAME, "kind": ("类型", "可选的检查：它成为哪种类型的默认模型")},
    ),
    "models enable": CommandText("启用", "管理员：重新提供一个已停用的模型", {"name": _MODEL_NAME}),
    "models disable": CommandText(
        "停用", "管理员：不再提供某个模型；排队中的任务会完成", {"name": _MODEL_NAME}
    ),
    "models remove": CommandText(
        "移除", "管理员：删除一个模型（排队中的任务会完成）", {"name": _MODEL_NAME}
    ),
    "models load": CommandText(
        "加载",
        "管理员：现在就把模型加载到引擎中",
        {
            "name": _MODEL_NAME,
            "replicas": ("副本数", "引擎有多个副本（Ray）时：加载到几个（默认全部）"),
        },
    ),
    "models unload": CommandText(
        "卸载", "管理员：释放模型占用的内存（在它的任务完成后）", {"name": _MODEL_NAME}
    ),
    "models log": CommandText(
        "日志", "管理员：最近的管理操作", {"count": ("条数", "显示多少条（默认 10）")}
    ),
    "status": CommandText("状态", "管理员：队列、引擎、已加载的模型、最近的图像"),
    "moderation": CommandText("审核", "审核员：被标记的图像、警告与暂停"),
    "moderation queue": CommandText("队列", "等待审核员处理的被标记图像"),
    "moderation user": CommandText(
        "用户", "某位用户的警告和被标记的图像", {"user": ("用户", "要查看谁的记录")}
    ),
    "moderation pardon": CommandText(
        "赦免", "管理员：撤销某位用户的警告和暂停", {"user": ("用户", "要撤销谁的警告")}
    ),
}


@dataclass(frozen=True)
class Catalog:
    """One language's command texts, with every command's choices in one lookup."""

    commands: Mapping[str, CommandText]
    choices: Mapping[str, str]

    @classmethod
    def of(cls, commands: Mapping[str, CommandText]) -> Catalog:
        choices: dict[str, str] = {}
        for qualified_name, entry in commands.items():
            for value, label in entry.choices.items():
                # discord.py asks about a choice without saying whose it is.
                if choices.setdefault(value, label) != label:
                    raise ValueError(f"choice {value!r} of {qualified_name} has two labels")
        return cls(commands, choices)


CATALOGS: dict[str, Catalog] = {"zh-CN": Catalog.of(ZH_CN)}
