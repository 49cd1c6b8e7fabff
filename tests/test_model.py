"""Model loading (the tiny model through the real loader), prompt encoding and its cache."""

import pytest
import torch

from riffengine.errors import UserError
from riffengine.render.model import DEFAULT_MODEL, PARTS, build_tiny_model, load_model
from riffengine.render.prompts import PromptEncoder, parse_weighted


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


def test_tiny_model_has_the_real_layout(tiny_model_dir):
    for part in PARTS:
        assert (tiny_model_dir / part).is_dir()
    assert (tiny_model_dir / "tokenizer" / "vocab.json").is_file()
    assert (tiny_model_dir / "tokenizer" / "merges.txt").is_file()


def test_loader_round_trip(model, tiny_model_dir):
    assert model.dtype == torch.float32 and model.device == torch.device("cpu")
    assert model.vae_scale_factor == 8 and model.latent_channels == 4
    assert model.unet.config.down_block_types[0] == "CrossAttnDownBlock2D"
    assert model.unet.config.cross_attention_dim == model.text_encoder.config.hidden_size
    assert model.scheduler_config["_class_name"] == "PNDMScheduler"
    assert model.tokenizer.model_max_length == 77
    ids = model.tokenizer("lofi beat").input_ids
    assert ids[0] == model.tokenizer.bos_token_id and ids[-1] == model.tokenizer.eos_token_id
    assert model.tokenizer.decode(ids, skip_special_tokens=True).strip() == "lofi beat"


def test_tiny_model_is_deterministic(tmp_path, tiny_model_dir):
    again = load_model(str(build_tiny_model(tmp_path / "again")))
    first = load_model(str(tiny_model_dir))
    for a, b in zip(first.unet.parameters(), again.unet.parameters()):
        assert torch.equal(a, b)


def test_missing_hub_model_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_model(DEFAULT_MODEL)
    message = str(err.value)
    assert str(tmp_path / "hf" / "hub") in message
    assert f"huggingface-cli download {DEFAULT_MODEL}" in message


def test_missing_folder_and_incomplete_layout(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))
    (tmp_path / "unet").mkdir()
    with pytest.raises(UserError, match="vae"):
        load_model(str(tmp_path))


def test_bad_device():
    with pytest.raises(UserError, match="device"):
        load_model(DEFAULT_MODEL, device="toaster")


def test_weighting_syntax_parse():
    assert parse_weighted("lofi (piano:1.3) beat") == [("lofi ", 1.0), ("piano", 1.3), (" beat", 1.0)]
    assert parse_weighted("(a b:0.5)(c:.5)") == [("a bc", 0.5)]
    assert parse_weighted("plain (not weighted) text") == [("plain (not weighted) text", 1.0)]
    assert parse_weighted("x (y:2)") == [("x ", 1.0), ("y", 2.0)]


def test_encoder_cache_hits_and_weighting(model):
    enc = PromptEncoder(model.tokenizer, model.text_encoder, model.device, model.dtype)
    plain = enc.encode("lofi beat")
    assert plain.shape == (1, 77, model.text_encoder.config.hidden_size)
    assert enc.encode("lofi beat") is plain
    assert (enc.hits, enc.misses) == (1, 1)
    # weight 1 written out is the plain prompt's encoding
    assert torch.allclose(enc.encode("(lofi:1) beat"), plain, atol=1e-6)
    weighted = enc.encode("(lofi:1.5) beat")
    assert not torch.allclose(weighted, plain, atol=1e-4)
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-5)
