"""Training views decoded once into memory (cache.decode_once)."""

import pytest
import torch

from karmma.data.config import load_split
from karmma.data.dataset import ClipDataset
from karmma.data.loader import view_seed
from karmma.data.transforms import finish_inputs
from karmma.presets import tiny_preset
from karmma.training.memory import DecodedClips, DecodedViews
from karmma.training.run import train


def _clips(synth_prepared, make_config, split="train"):
    config = make_config("baseline", synth_prepared, synth_prepared / "unused")
    shapes = {k: tiny_preset().student[k].input_shape for k in ("V", "F", "A")}
    return ClipDataset(load_split(config.data, split), shapes, train=split == "train", config=config.clip)


def test_decoded_views_are_the_seeded_views(synth_prepared, make_config):
    clips = _clips(synth_prepared, make_config)
    decoded = DecodedViews(clips, views=2, seed=7)
    assert len(decoded) == len(clips.samples) and len(decoded.items) == 2 * len(clips.samples)
    for index in (0, len(clips.samples) - 1):
        for view in (0, 1):
            live = clips[(index, view_seed(7, index, view))]
            stored = decoded.view_item(index, view)
            assert torch.equal(stored["availability"], live["availability"])
            # V and F kept as the uint8 crops the loader hands over (exact), A (where present) as float16
            assert stored["inputs"]["V"].dtype == stored["inputs"]["F"].dtype == torch.uint8
            assert stored["inputs"].keys() == live["inputs"].keys() and stored["affine"].keys() == {"V", "F"}
            finished, expected = finish_inputs(stored), finish_inputs(live)
            for key, value in expected.items():
                assert finished[key].dtype == torch.float32
                if key in ("V", "F"):
                    assert torch.equal(stored["inputs"][key], live["inputs"][key]) and torch.equal(finished[key], value)
                else:
                    torch.testing.assert_close(finished[key], value, atol=2e-2, rtol=1e-2)  # kept as float16
    # a quarter of float32's memory for V and F, half for A
    sizes = {k: torch.Size(s).numel() for k, s in clips.input_shapes.items()}
    audio = sum("A" in item["inputs"] for item in decoded.items)
    assert decoded.bytes == len(decoded.items) * (sizes["V"] + sizes["F"]) + audio * 2 * sizes["A"]
    # an epoch's item: view seed % views, with fresh dropout noise per seed
    first, second = decoded[(0, 10)], decoded[(0, 12)]
    torch.testing.assert_close(first["inputs"]["V"], decoded.view_item(0, 0)["inputs"]["V"])
    torch.testing.assert_close(first["inputs"]["V"], second["inputs"]["V"])
    assert not torch.equal(first["noise"], second["noise"])


@pytest.mark.e2e
def test_a_stage_trains_from_decoded_views_without_decoding_again(synth_prepared, make_config, tmp_path, monkeypatch):
    decoded_items = []
    original = ClipDataset.__getitem__

    def counting(self, key):
        if self.train:
            decoded_items.append(key)
        return original(self, key)

    monkeypatch.setattr(ClipDataset, "__getitem__", counting)
    train(
        make_config(
            "baseline_delta",
            synth_prepared,
            tmp_path,
            "cache.decode_once=true",
            "cache.train_views=2",
            "optim.epochs=2",
        )
    )
    clips = len(_clips(synth_prepared, make_config).samples)
    assert len(decoded_items) == 2 * clips  # two views per clip, decoded once for both epochs


def test_views_decoded_by_workers_are_not_left_in_shared_memory(synth_prepared, make_config):
    decoded = DecodedViews(_clips(synth_prepared, make_config), views=2, seed=3, workers=1)
    tensors = [t for item in decoded.items for t in (*item["inputs"].values(), item["availability"], item["noise"])]
    assert tensors and not any(t.is_shared() for t in tensors)


def test_decoded_validation_clips_are_the_live_items_for_any_seed(synth_prepared, make_config):
    clips = _clips(synth_prepared, make_config, "validation")
    decoded = DecodedClips(clips, workers=1)
    assert len(decoded) == len(clips) and decoded.bytes > 0
    for index in (0, len(clips) - 1):
        for seed in (3, 12345):  # the sampler's seed changes nothing an evaluation uses
            live, stored = clips[(index, seed)], decoded[(index, seed)]
            assert stored["id"] == live["id"] and stored["labels"] == live["labels"]
            assert torch.equal(stored["availability"], live["availability"])
            assert stored["inputs"].keys() == live["inputs"].keys()
            for key, value in live["inputs"].items():
                if key == "A":  # the log-mel made in a worker process differs in its last digits
                    torch.testing.assert_close(stored["inputs"][key], value, atol=1e-4, rtol=1e-5)
                else:
                    assert torch.equal(stored["inputs"][key], value)
                assert not stored["inputs"][key].is_shared()
    with pytest.raises(ValueError, match="train=False"):
        DecodedClips(_clips(synth_prepared, make_config))


@pytest.mark.e2e
def test_a_stage_decodes_its_validation_clips_once(synth_prepared, make_config, tmp_path, monkeypatch):
    decoded_items = []
    original = ClipDataset.__getitem__

    def counting(self, key):
        if not self.train:
            decoded_items.append(key)
        return original(self, key)

    monkeypatch.setattr(ClipDataset, "__getitem__", counting)
    config = make_config(
        "baseline", synth_prepared, tmp_path, "cache.decode_validation_once=true", "optim.epochs=2", "trainer.workers=0"
    )
    result = train(config)
    assert result["best_checkpoint"] is not None  # both epochs were validated
    assert len(decoded_items) == len(_clips(synth_prepared, make_config, "validation"))  # once, not once per epoch
