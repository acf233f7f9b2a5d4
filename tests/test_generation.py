"""GenerationSettings, the one translation of the config's generation keys and a request's overrides: what
transformers' generate and vLLM get, the checks on overrides, the reply capped to the context, and
evaluation's rule (greedy unless do_sample was set)."""

from __future__ import annotations

import pytest

from tuneboard.config import Config, from_dict
from tuneboard.errors import TuneboardError
from tuneboard.inference.generation import GenerationSettings

GREEDY = {"max_new_tokens": 512, "num_beams": 1, "do_sample": False, "repetition_penalty": 1.0}


def test_the_config_gives_the_generate_keywords():
    sampled = GenerationSettings.from_config(Config())
    assert sampled.generate_kwargs() == {
        **GREEDY,
        "do_sample": True,
        "temperature": 0.95,
        "top_p": 0.7,
        "top_k": 50,
    }
    assert GenerationSettings.from_config(Config(do_sample=False)).generate_kwargs() == GREEDY
    assert GenerationSettings.from_config(Config(temperature=0)).generate_kwargs() == GREEDY


def test_a_temperature_asked_for_decides_sampling():
    greedy_cfg = Config(do_sample=False)
    assert GenerationSettings.from_config(greedy_cfg, temperature=0.8).do_sample is True
    assert GenerationSettings.from_config(Config(), temperature=0).do_sample is False
    assert GenerationSettings.from_config(Config(), temperature=0.5, do_sample=False).do_sample is False
    got = GenerationSettings.from_config(Config(), max_new_tokens=7, top_p=None, min_new_tokens=2)
    assert got.max_new_tokens == 7 and got.top_p == 0.7 and got.generate_kwargs()["min_new_tokens"] == 2
    assert isinstance(GenerationSettings.from_config(Config(), max_new_tokens=5.0).max_new_tokens, int)


@pytest.mark.parametrize(
    "key, value",
    [
        ("top_p", 0),
        ("top_p", 1.01),
        ("temperature", -0.1),
        ("temperature", float("nan")),
        ("temperature", float("inf")),
        ("max_new_tokens", 0),
        ("max_new_tokens", True),
        ("max_new_tokens", 2.5),
        ("max_new_tokens", "8"),
        ("top_k", -1),
        ("num_beams", 0),
        ("repetition_penalty", 0),
        ("do_sample", "yes"),
    ],
)
def test_overrides_out_of_range_are_refused_by_name(key, value):
    with pytest.raises(TuneboardError, match=key):
        GenerationSettings.from_config(Config(), **{key: value})


def test_an_unknown_setting_is_refused():
    with pytest.raises(TuneboardError, match="'beams' is not a generation setting"):
        GenerationSettings.from_config(Config(), beams=2)


def test_vllm_values():
    kw = GenerationSettings.from_config(Config(top_k=0), max_new_tokens=9).vllm_kwargs()
    assert kw == {
        "temperature": 0.95,
        "top_p": 0.7,
        "top_k": -1,
        "repetition_penalty": 1.0,
        "max_tokens": 9,
        "min_tokens": 0,
    }
    greedy = GenerationSettings.from_config(Config(do_sample=False)).vllm_kwargs()
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0.0, 1.0, -1)
    with pytest.raises(TuneboardError, match="beam"):
        GenerationSettings.from_config(Config(num_beams=2)).vllm_kwargs()


def test_capped_to_the_room_left():
    settings = GenerationSettings.from_config(Config(), max_new_tokens=100, min_new_tokens=50)
    assert settings.capped(30).max_new_tokens == 30 and settings.capped(30).min_new_tokens == 30
    assert settings.capped(500) == settings


def test_evaluation_is_greedy_unless_do_sample_was_set():
    from tuneboard.evaluate.workflow import generation_settings

    assert generation_settings(from_dict({})[0]).generate_kwargs() == GREEDY
    assert generation_settings(from_dict({"temperature": 0.5, "top_p": 0.9})[0]).generate_kwargs() == GREEDY
    sampled = generation_settings(from_dict({"do_sample": True, "max_new_tokens": 8})[0]).generate_kwargs()
    assert sampled == {
        **GREEDY,
        "max_new_tokens": 8,
        "do_sample": True,
        "temperature": 0.95,
        "top_p": 0.7,
        "top_k": 50,
    }
    assert generation_settings(from_dict({"do_sample": False})[0]).generate_kwargs() == GREEDY
