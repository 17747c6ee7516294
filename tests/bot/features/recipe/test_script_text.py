"""Recipe scripts show every character of the text they quote."""

from __future__ import annotations

import ast
import re

from bot.features.recipe._script import render_script
from bot.store.models import Job

BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

# "Trojan Source": an override and an isolate that make the line read differently from how it
# runs. Stored before prompts were cleaned, or typed as a negative prompt by an older client.
PROMPT = 'a fox\u202e"; import os  #\u2066'
NEGATIVE = "blurry\u200b\u2067"


def test_invisible_characters_are_escaped_and_the_strings_stay_the_same():
    job = Job(
        id=3,
        kind="text_to_image",
        model_name="tiny-sd",
        model_source="org/tiny-sd",
        model_revision=None,
        model_revision_used=None,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        seeds=[42],
        steps=3,
        guidance=7.5,
        width=64,
        height=64,
        scheduler="euler",
        strength=1.0,
        mask_prompt=None,
        comparison=None,
        comparison_values=None,
        parent_job_id=None,
    )
    script = render_script(job)
    assert not BIDI_CONTROLS.search(script) and "\u200b" not in script
    assert 'PROMPT = "a fox\\u202e\\"; import os  #\\u2066"' in script
    # The escapes are the same strings: the script still asks for what the engine drew.
    assigned = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(script).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("PROMPT", "NEGATIVE_PROMPT")
    }
    assert assigned == {"PROMPT": PROMPT, "NEGATIVE_PROMPT": NEGATIVE}
