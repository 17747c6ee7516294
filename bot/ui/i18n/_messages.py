"""Replies in the reader's language: ``t(interaction, key, **values)``.

Covered: the course's lesson captions and explanations, the replies of the lesson buttons
and of ``/recipe``, and the labels of the buttons under a job's message (``label``). Other
replies are English for now; a reply joins by getting an entry here and a ``t`` call where it
is sent.
"""

from __future__ import annotations

import discord

from engine.protocol import BOUNDS

ENGLISH = "en"

MESSAGES: dict[str, dict[str, str]] = {
    # --- lessons (bot.course) ------------------------------------------------------------
    "lesson.guidance.title": {
        ENGLISH: "Guidance sweep (classifier-free guidance)",
        "zh-CN": "引导系数对比（无分类器引导）",
    },
    "lesson.guidance.notice": {
        ENGLISH: "At CFG 0 and 1 there is no guidance and the prompt barely shows; very high "
        "guidance over-saturates and distorts. 7–8.5 is the usual middle.",
        "zh-CN": "CFG 为 0 和 1 时没有引导，几乎看不出提示词；引导过高会过饱和、变形。"
        "7–8.5 是常用的折中。",
    },
    "lesson.steps.title": {ENGLISH: "Denoising steps", "zh-CN": "去噪步数对比"},
    "lesson.steps.notice": {
        ENGLISH: "Few steps leave the picture unfinished; the layout is there early, and past "
        "25–50 steps it barely changes, it only takes longer (the course compares 15 with 50).",
        "zh-CN": "步数太少时图像还没完成；构图很早就定下了，超过 25–50 步后几乎不再变化，"
        "只是更慢（课程里比较了 15 步和 50 步）。",
    },
    # FLUX.1 schnell's steps lesson (1-4): the course's 15-against-50 does not apply to it.
    "lesson.steps.notice.distilled": {
        ENGLISH: "This model is distilled to finish in 1–4 steps: one step already gives a "
        "whole picture, more steps refine it, and past 4 it was never trained.",
        "zh-CN": "这个模型经过蒸馏，1–4 步就能完成：一步已经是完整的图像，更多步数只是细化，"
        "超过 4 步它从未训练过。",
    },
    "lesson.schedulers.title": {ENGLISH: "Schedulers", "zh-CN": "调度器对比"},
    "lesson.schedulers.notice": {
        ENGLISH: "Each scheduler takes the same denoising steps its own way: with one seed the "
        "layout mostly stays, while detail, sharpness and colour change.",
        "zh-CN": "每个调度器以自己的方式走完同样的去噪步骤：同一个种子下构图大体不变，"
        "细节、锐度和色彩会不同。",
    },
    "lesson.denoising.title": {
        ENGLISH: "Denoising, step by step",
        "zh-CN": "逐步去噪",
    },
    "lesson.denoising.notice": {
        ENGLISH: "Each panel is the model's guess of the clean image (x₀) at that step of one "
        "run: the layout is settled in the first steps, later ones only refine detail.",
        "zh-CN": "每一格是同一次生成中模型在该步对干净图像（x₀）的预测：构图在最初几步就定了，"
        "之后的步骤只是完善细节。",
    },
    # The words in the labels drawn over a comparison's panels (bot.jobs.lessons).
    "lesson.label.steps": {ENGLISH: "{steps} steps", "zh-CN": "{steps} 步"},
    "lesson.label.step": {ENGLISH: "step {step}/{total}", "zh-CN": "第 {step}/{total} 步"},
    "lesson.caption": {
        ENGLISH: "🧪 **{title}** of job #{parent} · {prompt} by <@{user}>",
        "zh-CN": "🧪 任务 #{parent} 的**{title}** · {prompt} · <@{user}>",
    },
    "lesson.notice": {ENGLISH: "👀 What to notice: {notice}", "zh-CN": "👀 看点：{notice}"},
    "lesson.original": {
        ENGLISH: "The {label} panel is the original picture.",
        "zh-CN": "“{label}”那一格就是原图。",
    },
    "lesson.flagged": {
        ENGLISH: "⚠️ The safety checker flagged {count} panel(s): blurred, and the grid is "
        "hidden behind a spoiler.",
        "zh-CN": "⚠️ 安全检查器标记了 {count} 格：已模糊处理，整张对比图以剧透方式隐藏。",
    },
    "lesson.not_twice": {
        ENGLISH: "Job #{job_id} is already a comparison; use the buttons under an ordinary result.",
        "zh-CN": "任务 #{job_id} 本身就是一次对比；请使用普通结果下方的按钮。",
    },
    # --- /compare's X/Y grids (bot.jobs.xy_plot) -------------------------------------------
    # The axis names drawn beside the values, as the web UI's X/Y plot writes them.
    "xy.axis.guidance": {ENGLISH: "CFG", "zh-CN": "引导系数"},
    "xy.axis.steps": {ENGLISH: "Steps", "zh-CN": "步数"},
    "xy.axis.scheduler": {ENGLISH: "Sampler", "zh-CN": "调度器"},
    "xy.axis.seed": {ENGLISH: "Seed", "zh-CN": "种子"},
    "xy.axis.strength": {ENGLISH: "Strength", "zh-CN": "强度"},
    "xy.axis.model": {ENGLISH: "Model", "zh-CN": "模型"},
    "xy.caption": {
        ENGLISH: "🧪 **X/Y grid** · {prompt} by <@{user}>",
        "zh-CN": "🧪 **X/Y 对比图** · {prompt} · <@{user}>",
    },
    "xy.axes": {ENGLISH: "Across: {x}", "zh-CN": "横向：{x}"},
    "xy.axes_two": {ENGLISH: "Across: {x} · Down: {y}", "zh-CN": "横向：{x} · 纵向：{y}"},
    "xy.same_seed": {
        ENGLISH: "Every panel starts from the same noise (seed {seed}), so the panels differ only "
        "by what the axes vary.",
        "zh-CN": "每一格都从同样的噪声开始（种子 {seed}），"
        "所以各格的差别只来自坐标轴上改变的设置。",
    },
    "xy.seed_axis": {
        ENGLISH: "Each column or row has its own seed: the same settings from different noise.",
        "zh-CN": "每一行或每一列有自己的种子：同样的设置，不同的起始噪声。",
    },
    "xy.default": {
        ENGLISH: "The “{label}” panel has /imagine's own settings: it is that very picture.",
        "zh-CN": "“{label}”那一格用的是 /imagine 的默认设置：就是同一张图。",
    },
    # --- /recipe (bot.recipe) ------------------------------------------------------------
    "recipe.posted": {
        ENGLISH: "📜 Recipe for job #{job_id}: `python {script}` makes the same image with "
        "diffusers, pixel for pixel on the same kind of hardware. The comments explain each "
        "setting.",
        "zh-CN": "📜 任务 #{job_id} 的复现脚本：运行 `python {script}`，用 diffusers 生成同样的"
        "图像，在同类硬件上逐像素一致。脚本里的注释解释了每个设置。",
    },
    "recipe.inputs": {
        ENGLISH: "Keep the attached {files} next to the script: it reads them.",
        "zh-CN": "请把附带的 {files} 放在脚本旁边：脚本会读取它们。",
    },
    "recipe.inputs_withheld": {
        ENGLISH: "The picture and mask it reads ({files}) were uploaded by the job's owner and "
        "stay with them: put pictures of your own under those names next to the script.",
        "zh-CN": "脚本读取的图像和蒙版（{files}）由任务的主人上传，只属于他们：请把你自己的图片"
        "用这些文件名放在脚本旁边。",
    },
    "recipe.flagged": {
        ENGLISH: "The safety checker flagged job #{job_id}'s images, so only the student who "
        "made it can have its recipe.",
        "zh-CN": "任务 #{job_id} 的图像被安全检查器标记，"
        "因此只有创建它的同学可以获取它的复现脚本。",
    },
    "recipe.no_job": {
        ENGLISH: "Job #{job_id} does not exist (it may have been deleted).",
        "zh-CN": "任务 #{job_id} 不存在（可能已被删除）。",
    },
    "recipe.inputs_gone": {
        ENGLISH: "The picture and mask it reads ({files}) are no longer stored on the bot: put "
        "the original pictures under those names next to the script.",
        "zh-CN": "脚本读取的图像和蒙版（{files}）已不在机器人的存储中：请把原始图片用这些文件名"
        "放在脚本旁边。",
    },
    "recipe.inputs_expired": {
        ENGLISH: "The picture and mask it reads ({files}) are no longer stored on the bot "
        "(uploads are kept {days} days after their last use): put the original pictures under "
        "those names next to the script.",
        "zh-CN": "脚本读取的图像和蒙版（{files}）已不在机器人的存储中（上传的图片在最后一次使用后"
        "保留 {days} 天）：请把原始图片用这些文件名放在脚本旁边。",
    },
}


# The buttons under a job's message (bot.ui.buttons), by their English label: in the language
# of the student who asked for the job, like its caption. Moderators' buttons stay English.
LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "Reroll": "重新生成",
        "Details": "详情",
        "Delete": "删除",
        "Cancel": "取消",
        "Vary (subtle)": "轻微变化",
        "Vary (strong)": "大幅变化",
        "Compare CFG": "对比引导系数",
        "Compare steps": "对比步数",
        "Compare schedulers": "对比调度器",
        "Denoising strip": "逐步去噪",
        "Upscale ×4": "放大 ×4",
        **{f"Upscale {n}": f"放大第 {n} 张" for n in range(1, BOUNDS.count.max + 1)},
    },
}


def label(text: str, where: discord.Interaction | discord.Locale | str | None) -> str:
    """A button's English label ``text`` in the reader's language where it has one."""
    return LABELS.get(locale_of(where), {}).get(text, text)


def locale_of(where: discord.Interaction | discord.Locale | str | None) -> str:
    """The language code to answer in: the Discord client's locale, e.g. ``zh-CN``."""
    if isinstance(where, discord.Interaction):
        where = where.locale
    if isinstance(where, discord.Locale):
        return where.value
    return where or ENGLISH


def t(where: discord.Interaction | discord.Locale | str | None, key: str, **values: object) -> str:
    """The message ``key`` in the reader's language where it exists, else in English."""
    texts = MESSAGES[key]
    text = texts.get(locale_of(where), texts[ENGLISH])
    return text.format(**values)
