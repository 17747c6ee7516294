"""Fixtures for engine tests: a worker on the tiny models, recording its events."""

from __future__ import annotations

import pytest

from engine.protocol import ModelRef
from engine.settings import EngineSettings
from engine.worker import Worker
from tests.engine.helpers import Recorder, engine_settings
from tests.fixtures.tiny_models import TinyModels


@pytest.fixture
def settings(tiny_models: TinyModels) -> EngineSettings:
    return engine_settings(tiny_models)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def worker(settings: EngineSettings, recorder: Recorder) -> Worker:
    return Worker(settings, recorder)


@pytest.fixture
def t2i_model(tiny_models: TinyModels) -> ModelRef:
    return ModelRef(name="tiny-sd", source=str(tiny_models.text_to_image))


@pytest.fixture
def inpaint_model(tiny_models: TinyModels) -> ModelRef:
    return ModelRef(name="tiny-sd-inpainting", source=str(tiny_models.inpainting))
