"""model/rope.py: rope_scaling sets the factor from cutoff_len on a model with plain RoPE, and leaves a model that
already scales its RoPE (Llama 3.1's llama3, Qwen2.5's YaRN) as it is."""

from __future__ import annotations

from transformers import Qwen2Config

from tuneboard.model import rope


def test_plain_rope_is_scaled_to_cutoff_len():
    config = Qwen2Config(max_position_embeddings=4096)
    params = rope.apply(config, "yarn", 10000)
    assert params["rope_type"] == "yarn" and params["factor"] == 3.0
    assert params["original_max_position_embeddings"] == 4096 and config.max_position_embeddings == 12288
    assert rope.apply(Qwen2Config(max_position_embeddings=4096), "linear", 4096) is None  # fits: unchanged


def test_a_model_that_already_scales_its_rope_is_left_alone(capsys):
    scaled = {
        "rope_type": "llama3",
        "factor": 8.0,
        "original_max_position_embeddings": 8192,
        "rope_theta": 5e5,
    }
    scaled |= {"low_freq_factor": 1.0, "high_freq_factor": 4.0}
    config = Qwen2Config(max_position_embeddings=131072, rope_parameters=dict(scaled))
    assert rope.apply(config, "linear", 16384) is None
    assert config.rope_parameters["factor"] == 8.0 and config.max_position_embeddings == 131072
    assert "already uses llama3 RoPE scaling" in capsys.readouterr().err
