"""Course mode: the lessons' comparisons, asked for with the buttons under each result."""

from bot.course._lessons import (
    BY_ACTION,
    BY_KIND,
    LESSONS,
    Lesson,
    decode_steps,
    denoising_steps,
    panel_labels,
    values_for,
    variants,
)
from bot.course._requests import comparison_job, request_comparison
from bot.course._results import comparison_message

__all__ = [
    "BY_ACTION",
    "BY_KIND",
    "LESSONS",
    "Lesson",
    "comparison_job",
    "comparison_message",
    "decode_steps",
    "denoising_steps",
    "panel_labels",
    "request_comparison",
    "values_for",
    "variants",
]
