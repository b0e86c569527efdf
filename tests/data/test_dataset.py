import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from karmma.data.annotations import read_epic_segments
from karmma.data.dataset import MISSING, PRESENT, UNREADABLE, ClipDataset, DataReport, collate_clips
from karmma.data.epic import EpicLayout, epic_samples, read_video_info
from karmma.data.synth_world import NOUN_NAMES, VERB_NAMES
from karmma.data.transforms import finish_inputs
from karmma.train_config import ClipConfig

SYNTH_HEADS = {"verb": len(VERB_NAMES), "noun": len(NOUN_NAMES)}

SHAPES = {"V": (4, 3, 32, 32), "F": (4, 2, 32, 32), "A": (1, 64, 100)}


def _dataset(root: Path, train=True, shapes=SHAPES, **kwargs) -> ClipDataset:
    segments = []
    for split in ("train", "validation"):
        segments += read_epic_segments(root / "annotations" / f"EPIC_100_{split}.csv", SYNTH_HEADS)
    samples = epic_samples(
        segments, EpicLayout(root), read_video_info(root / "annotations" / "EPIC_100_video_info.csv")
    )
    return ClipDataset(samples, shapes, train=train, **kwargs)


def _all_batches(dataset, workers=2):
    report = DataReport(dataset.modalities)
    batches = []
    for batch in DataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=collate_clips):
        report.add(batch["status"])
        batches.append(batch)
    return batches, report


def test_batches_with_all_modalities(synth_prepared):
    dataset = _dataset(synth_prepared)
    assert len(dataset) == 12
    batches, report = _all_batches(dataset)
    batch = batches[0]
    assert batch["inputs"]["V"].shape == (4, *SHAPES["V"])
    assert batch["inputs"]["F"].shape == (4, *SHAPES["F"])
    assert batch["inputs"]["A"].shape == (4, *SHAPES["A"])
    # V and F handed over as uint8 crops with one map per sample and channel; A as float
    assert batch["inputs"]["V"].dtype == batch["inputs"]["F"].dtype == torch.uint8
    assert batch["inputs"]["V"].stride()[2] == 1 and batch["inputs"]["F"].is_contiguous()  # RGB channels last
    assert batch["affine"]["V"].shape == (4, 2, 3) and batch["affine"]["F"].shape == (4, 2, 2)
    assert batch["inputs"]["A"].dtype == torch.float32 and "A" not in batch["affine"]
    assert batch["labels"]["verb"].dtype == torch.long and batch["availability"].shape == (4, 3)
    for batch in batches:
        for tensor in finish_inputs(batch).values():
            assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
    # every sample has V and F; A is there for exactly the videos with an audio track
    with_audio = {p.stem for p in synth_prepared.rglob("audio/*.wav")}
    counts = report.as_dict()["modalities"]
    assert counts["V"]["present"] == counts["F"]["present"] == 12
    expected_audio = sum(1 for s in dataset.samples if s.group in with_audio)
    assert counts["A"]["present"] == expected_audio


def test_deleted_flow_makes_exactly_those_samples_lose_flow(prepared_copy, caplog):
    import shutil

    flow_dir = next(prepared_copy.rglob("flow_frames/P01_01"))
    shutil.rmtree(flow_dir)
    dataset = _dataset(prepared_copy)
    counts = dataset.report.as_dict()["modalities"]
    lost = [s.id for s in dataset.samples if s.group == "P01_01"]
    assert counts["F"] == {"present": 12 - len(lost), "missing": len(lost), "unreadable": 0}
    batches, _ = _all_batches(dataset)
    for batch in batches:
        for sample_id, available in zip(batch["ids"], batch["availability"][:, 1].tolist()):
            assert available == (sample_id not in lost)
    with pytest.raises(FileNotFoundError, match="P01_01_0:F"):
        _dataset(prepared_copy, missing="error")


def test_corrupt_jpeg_is_unreadable_and_logged(prepared_copy, caplog):
    dataset = _dataset(prepared_copy, train=False)
    victim = dataset.samples[0]
    frames = sorted((prepared_copy / "P01" / "rgb_frames" / victim.group).glob("*.jpg"))
    for frame in frames:  # truncate every frame of the video: any sampled one is broken
        data = frame.read_bytes()
        frame.write_bytes(data[: len(data) // 2])
    caplog.set_level(logging.WARNING, logger="karmma.data")
    batches, report = _all_batches(dataset, workers=0)
    broken = {s.id for s in dataset.samples if s.group == victim.group}
    counts = report.as_dict()["modalities"]["V"]
    assert counts == {"present": 12 - len(broken), "missing": 0, "unreadable": len(broken)}
    assert any("unreadable V" in r.message and victim.group in r.message for r in caplog.records)
    for batch in batches:
        for sample_id, status in zip(batch["ids"], batch["status"][:, 0].tolist()):
            assert status == (UNREADABLE if sample_id in broken else PRESENT)


def test_jpeg_with_corrupt_scan_data_makes_v_unreadable(prepared_copy, media, caplog, capfd):
    dataset = _dataset(prepared_copy, train=False)
    victim = dataset.samples[0]
    before = dataset[0]["status"].tolist()
    assert before[0] == PRESENT
    frames = sorted((prepared_copy / "P01" / "rgb_frames" / victim.group).glob("*.jpg"))
    for frame in frames[victim.start_frame - 1 : victim.stop_frame]:  # markers intact, picture data broken
        media.corrupt_jpeg_scan(frame)
    caplog.set_level(logging.WARNING, logger="karmma.data")
    item = dataset[0]
    assert item["status"].tolist() == [UNREADABLE, *before[1:]] and "V" not in item["inputs"]
    assert any("unreadable V" in r.message and "corrupt image data" in r.message for r in caplog.records)
    assert any(str(frame) in r.message for r in caplog.records for frame in frames)  # logged with its path
    _, report = _all_batches(dataset, workers=2)  # the same in forked loader workers
    assert report.as_dict()["modalities"]["V"]["unreadable"] >= 1
    assert "Corrupt JPEG" not in capfd.readouterr().err


def test_corrupt_media_never_crashes_workers(prepared_copy):
    wav = next(prepared_copy.rglob("audio/*.wav"))
    wav.write_bytes(wav.read_bytes()[:1000])  # truncated WAV
    for jpg in list((prepared_copy).rglob("flow_frames/*/u/*.jpg"))[::3]:
        jpg.write_bytes(b"not a jpeg")
    batches, report = _all_batches(_dataset(prepared_copy), workers=2)
    counts = report.as_dict()["modalities"]
    assert counts["A"]["unreadable"] >= 1 and counts["F"]["unreadable"] >= 1
    assert sum(len(b["ids"]) for b in batches) == 12


def test_sample_without_any_modality_is_skipped_and_counted(prepared_copy):
    import shutil

    for kind in ("rgb_frames", "flow_frames"):
        shutil.rmtree(next(prepared_copy.rglob(f"{kind}/P02_01")))
    for wav in prepared_copy.rglob("audio/P02_01.wav"):
        wav.unlink()
    dataset = _dataset(prepared_copy)
    assert dataset.report.skipped == 3 and len(dataset) == 9


def test_evaluation_views_are_deterministic(synth_prepared):
    config = ClipConfig(num_clips=2, num_crops=3)
    dataset = _dataset(synth_prepared, train=False, config=config)
    assert len(dataset) == 12 * 6
    a, b = dataset[7], dataset[7]
    assert a["view"] == 1 and torch.equal(a["inputs"]["V"], b["inputs"]["V"])
    assert not torch.equal(dataset[6]["inputs"]["V"], dataset[7]["inputs"]["V"])  # other crop


def test_teacher_audio_images(synth_prepared):
    shapes = {"V": (4, 3, 32, 32), "A": (4, 1, 32, 32)}
    dataset = _dataset(synth_prepared, train=False, shapes=shapes)
    item = next(dataset[i] for i in range(len(dataset)) if dataset[i]["availability"][1])
    assert item["inputs"]["A"].shape == (4, 1, 32, 32) and torch.isfinite(item["inputs"]["A"]).all()


def _write_wav(path: Path, seconds: float) -> None:
    import wave

    import numpy as np

    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(24000)
        f.writeframes((np.sin(np.arange(int(24000 * seconds)) * 0.05) * 8000).astype("<i2").tobytes())


@pytest.mark.parametrize("seconds", [0.01, 0.0])
def test_audio_that_does_not_cover_the_clip_is_missing_not_a_constant_spectrogram(prepared_copy, seconds, caplog):
    """A 10 ms track or a zero-sample WAV: every clip of that video has A missing (counted, logged),
    in training and evaluation; clips of other videos keep their audio."""
    wav = sorted(prepared_copy.rglob("audio/*.wav"))[0]
    _write_wav(wav, seconds)
    for train in (True, False):
        with caplog.at_level(logging.WARNING, logger="karmma.data"):
            dataset = _dataset(prepared_copy, train=train)
        victims = {s.id for s in dataset.samples if s.group == wav.stem}
        assert victims and {sid for sid, _ in dataset.report.not_covered["A"]} == victims
        assert "do not cover the clip" in caplog.text
        for i in range(len(dataset)):
            item = dataset[i]
            a = dataset.modalities.index("A")
            if item["id"] in victims:
                assert item["status"][a] == MISSING and "A" not in item["inputs"]
            elif item["availability"][a]:
                assert item["inputs"]["A"].std() > 0  # real audio, not a padded constant
        assert dataset.report.as_dict()["not_covered"]["A"] == len(victims)


def test_timestamps_past_the_end_of_the_audio_are_missing(prepared_copy):
    wav = sorted(prepared_copy.rglob("audio/*.wav"))[0]
    dataset = _dataset(prepared_copy, train=False)
    clips = sorted((s for s in dataset.samples if s.group == wav.stem), key=lambda s: s.stop_time)
    cut = (clips[0].stop_time + clips[-1].start_time) / 2  # the audio ends after the first clip, before the last
    _write_wav(wav, cut)
    dataset = _dataset(prepared_copy, train=False)
    uncovered = {sid: why for sid, why in dataset.report.not_covered["A"]}
    assert clips[0].id not in uncovered and clips[-1].id in uncovered
    assert f"ends at {cut:.2f} s, before the clip's end" in uncovered[clips[-1].id]


def test_segments_past_the_last_frame_are_missing_and_reported(prepared_copy):
    from karmma.data.config import detect_dataset
    from karmma.data.inspect import inspect_dataset

    frames = sorted(next(prepared_copy.rglob("rgb_frames/P01_01")).glob("*.jpg"))
    for path in frames[len(frames) // 2 :]:  # the video's frames end halfway
        path.unlink()
    dataset = _dataset(prepared_copy, train=False)
    assert any("frame folder" in why and "before the clip's end" in why for _, why in dataset.report.not_covered["V"])
    _write_wav(sorted(prepared_copy.rglob("audio/*.wav"))[-1], 0.01)
    problems = inspect_dataset(detect_dataset(prepared_copy), workers=0)["problems"]
    assert any("V media do not cover" in p and "past the media's end" in p for p in problems), problems
    assert any("A media do not cover" in p for p in problems), problems


def test_items_match_the_float_pipeline_on_the_files(synth_prepared):
    """V and F of an evaluation item vs the replaced pipeline (PIL decode, float crop/resize), computed
    here from the same JPEG files: within the documented tolerance of one grey level."""
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from karmma.data.sampling import segment_frame_numbers
    from karmma.data.transforms import IMAGENET_MEAN, IMAGENET_STD, crop_box, eval_crop_params

    shapes = {"V": (4, 3, 24, 24), "F": (4, 2, 24, 24)}
    config = ClipConfig(flow_scale=2.0)
    dataset = _dataset(synth_prepared, train=False, shapes=shapes, config=config)
    sample = dataset.samples[5]
    item = dataset[5]
    inputs = finish_inputs(item)
    numbers = segment_frame_numbers(sample.start_frame, sample.stop_frame, 4, train=False)

    def pixels(paths, mode):
        return torch.from_numpy(np.stack([np.asarray(Image.open(p).convert(mode)) for p in paths])).float()

    def float_crop_resize(frames):  # [T, C, H, W] float
        top, left, ch, cw = crop_box(eval_crop_params(frames.shape[-1] / frames.shape[-2]), *frames.shape[-2:])
        out = F.interpolate(
            frames[..., top : top + ch, left : left + cw], size=(24, 24), mode="bilinear", antialias=True
        )
        return out, ch, cw

    rgb, _, _ = float_crop_resize(pixels([sample.sources["V"].path(n) for n in numbers], "RGB").permute(0, 3, 1, 2))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert ((inputs["V"] - (rgb / 255 - mean) / std).abs() * std * 255).max() <= 1.0 + 1e-3

    flow_paths = [sample.sources["F"].paths(n) for n in numbers]
    u, v = (pixels([p[i] for p in flow_paths], "L") for i in (0, 1))
    flow, ch, cw = float_crop_resize(torch.stack([u, v], 1) / 255 * 40 - 20)
    expected = flow * torch.tensor([24 / cw, 24 / ch]).view(1, 2, 1, 1) / 2.0
    level = 40 / 255 * 24 / min(ch, cw) / 2.0
    assert (inputs["F"] - expected).abs().max() <= level + 1e-4


def test_batches_loaded_in_place_equal_item_by_item_batches(prepared_copy):
    """__getitems__ writes inputs into one tensor per modality (shared memory in a worker): the batch
    equals stacking the items one by one, with zero rows where a modality is missing or unreadable."""
    import shutil

    shutil.rmtree(next(prepared_copy.rglob("flow_frames/P01_01")))
    for jpg in (prepared_copy / "P02" / "rgb_frames").rglob("*.jpg"):
        jpg.write_bytes(b"not a jpeg")
    dataset = _dataset(prepared_copy)
    keys = [(i, 1000 + i) for i in range(len(dataset))]
    one_by_one = collate_clips([dataset[k] for k in keys])
    in_place = collate_clips(dataset.__getitems__(keys))
    loader = DataLoader(dataset, batch_size=len(keys), sampler=keys, num_workers=1, collate_fn=collate_clips)
    from_worker = next(iter(loader))
    status = one_by_one["status"]
    assert (status == MISSING).any() and (status == UNREADABLE).any()  # both kinds of zero rows are exercised
    for batch, tolerance in (
        (in_place, 0.0),
        (from_worker, 1e-5),
    ):  # a worker has one thread: log-mel sums round differently
        assert batch["ids"] == one_by_one["ids"] and torch.equal(batch["status"], status)
        for key, tensor in one_by_one["inputs"].items():
            assert batch["inputs"][key].dtype == tensor.dtype, key
            assert torch.allclose(batch["inputs"][key].float(), tensor.float(), rtol=0.0, atol=tolerance), key
        for key, affine in one_by_one["affine"].items():
            assert torch.equal(batch["affine"][key], affine), key
        for key, tensor in finish_inputs(one_by_one).items():
            assert torch.allclose(finish_inputs(batch)[key], tensor, rtol=0.0, atol=tolerance), key
    absent = status[:, 1] != PRESENT
    assert one_by_one["inputs"]["F"][absent].sum() == 0 and one_by_one["affine"]["F"][absent].abs().sum() == 0
    assert finish_inputs(in_place)["F"][absent].abs().sum() == 0 and not (in_place["affine"]["F"][~absent] == 0).all()


def test_in_place_batch_with_a_dropped_item_is_copied(synth_prepared):
    dataset = _dataset(synth_prepared)
    keys = [(i, i) for i in range(4)]
    items = dataset.__getitems__(keys)
    items[1]["availability"][:] = False  # as if every modality of it had been unreadable
    batch = collate_clips(items)
    assert batch["dropped"] == [items[1]["id"]] and batch["inputs"]["V"].shape[0] == 3
    assert torch.equal(batch["inputs"]["V"][1], items[2]["inputs"]["V"])
