"""ROS 2 bags (.mcap, .db3) written with rosbags: camera and microphone gaps are missing modalities."""

import array
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from karmma.cli import main
from karmma.deploy.rosbag import AudioFormat, bag_predictions, image_from_message, is_bag, typestore

STORE = typestore()
TYPES = STORE.types


def _header(ns: int, frame: str = "sensor"):
    time = TYPES["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
    return TYPES["std_msgs/msg/Header"](stamp=time, frame_id=frame)


def _image(ns: int, rgb: np.ndarray, encoding: str = "rgb8", padding: int = 0):
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "16UC1": 2}[encoding]
    height, width = rgb.shape[:2]
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1]}.get(encoding, rgb[..., :2])
    rows = np.zeros((height, width * channels + padding), np.uint8)
    rows[:, : width * channels] = pixels.reshape(height, -1)
    return TYPES["sensor_msgs/msg/Image"](
        header=_header(ns),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels + padding,
        data=rows.reshape(-1),
    )


def _compressed(ns: int, rgb: np.ndarray, kind: str = "jpeg"):
    import cv2

    ok, data = cv2.imencode(".jpg" if kind == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return TYPES["sensor_msgs/msg/CompressedImage"](header=_header(ns), format=kind, data=data.reshape(-1))


def _audio(ns: int | None, data: bytes):
    chunk = TYPES["audio_common_msgs/msg/AudioData"](data=np.frombuffer(data, np.uint8))
    if ns is None:
        return chunk
    return TYPES["audio_common_msgs/msg/AudioDataStamped"](header=_header(ns), audio=chunk)


def _audio_info(rate: int, sample_format: str, coding: str = "wave"):
    return TYPES["audio_common_msgs/msg/AudioInfo"](
        channels=1, sample_rate=rate, sample_format=sample_format, bitrate=0, coding_format=coding
    )


def write_bag(path: Path, messages: list[tuple[str, int, object]], storage: str = "mcap") -> Path:
    """A rosbag2 folder of ``(topic, recorded ns, message)`` (recorded in time order); returns the storage file."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = {"mcap": StoragePlugin.MCAP, "db3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {}
        for topic, ns, message in sorted(messages, key=lambda m: m[1]):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, message.__msgtype__, typestore=STORE)
            writer.write(connections[topic], ns, STORE.serialize_cdr(message, message.__msgtype__))
    return next(path.glob(f"*.{storage}"))


def _scene(count: int, seed: int = 0) -> np.ndarray:
    """A bright square moving over fixed noise, 96 x 128."""
    background = np.random.default_rng(seed).integers(0, 120, (96, 128, 3), dtype=np.uint8)
    frames = np.repeat(background[None], count, axis=0)
    for i in range(count):
        frames[i, 30:60, 10 + (2 * i) % 90 :][:, :24] = 230
    return frames


def test_images_of_every_supported_encoding():
    rgb = _scene(1)[0]
    assert (image_from_message(_image(0, rgb), "/c") == rgb).all()
    assert (image_from_message(_image(0, rgb, padding=7), "/c") == rgb).all()  # rows padded to `step`
    assert (image_from_message(_image(0, rgb, "bgr8"), "/c") == rgb).all()
    assert (image_from_message(_image(0, rgb, "mono8"), "/c") == rgb[..., 0]).all()
    assert (image_from_message(_compressed(0, rgb, "png"), "/c") == rgb).all()
    rclpy_like = SimpleNamespace(  # rclpy messages hold uint8[] as array.array
        encoding="rgb8", height=96, width=128, step=384, data=array.array("B", rgb.tobytes())
    )
    assert (image_from_message(rclpy_like, "/c") == rgb).all()
    halves = np.zeros((32, 64, 3), np.uint8)
    halves[:, :32, 0], halves[:, 32:, 2] = 200, 150  # red | blue: JPEG keeps flat colours, in RGB order
    jpeg = image_from_message(_compressed(0, halves), "/c")
    assert jpeg.shape == halves.shape and np.abs(jpeg.astype(int) - halves).mean() < 3
    with pytest.raises(ValueError, match=r"/c: image encoding '16UC1' is not supported \(rgb8, bgr8, mono8\)"):
        image_from_message(_image(0, rgb, "16UC1"), "/c")
    depth = TYPES["sensor_msgs/msg/CompressedImage"](header=_header(0), format="16UC1; compressedDepth", data=[])
    with pytest.raises(ValueError, match="compressed image format '16UC1; compressedDepth' is not supported"):
        image_from_message(depth, "/c")


def test_audio_formats():
    assert AudioFormat.parse("s16le:16000") == AudioFormat("S16LE", 16000, 1)
    stereo = AudioFormat.parse("S16LE:48000:2").samples(np.arange(8, dtype="<i2").view(np.uint8))
    assert stereo.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert AudioFormat.parse("F32BE:8000").samples(np.array([0.5], ">f4").view(np.uint8)).tolist() == [[0.5]]
    odd = np.arange(3, dtype="<i2").tobytes() + b"\x01"  # bytes, as rclpy gives them; a trailing half sample
    assert AudioFormat.parse("S16LE:16000").samples(odd).tolist() == [[0], [1], [2]]
    for bad, message in (("S16LE", "expected FORMAT:RATE"), ("S24LE:16000", "'S24LE' is not supported")):
        with pytest.raises(ValueError, match=message):
            AudioFormat.parse(bad)
    with pytest.raises(ValueError, match="coding format 'mp3' is not supported"):
        AudioFormat.from_info(_audio_info(16000, "S16LE", "mp3"), "/audio/audio_info")


def test_bag_errors_name_the_topic_and_type(recognizer, tmp_path):
    bag = tmp_path / "robot"
    text = TYPES["std_msgs/msg/String"](data="hello")
    write_bag(bag, [("/chat", 0, text), ("/audio", 0, _audio(0, b"\0\0"))])
    assert is_bag(bag) and is_bag(bag / "robot.mcap") and not is_bag(tmp_path)

    def first_window(**topics):
        return next(bag_predictions(recognizer, bag, **topics))

    with pytest.raises(ValueError, match="--image-topic /chat is of type std_msgs/msg/String, which is not supported"):
        first_window(image_topic="/chat")
    with pytest.raises(
        ValueError, match=r"no topic /camera \(it has /audio \(audio_common_msgs/msg/AudioDataStamped\), /chat"
    ):
        first_window(image_topic="/camera")
    with pytest.raises(ValueError, match="the audio format is unknown .* give --audio-format"):
        first_window(audio_topic="/audio")
    with pytest.raises(ValueError, match="name its topics with --image-topic and/or --audio-topic"):
        first_window()


def _gap_bag(path: Path, storage: str) -> tuple[Path, tuple[float, float], tuple[float, float]]:
    """15 s: JPEG camera at ~30 Hz (stamps jittered by +-20 % of the interval) that stops for 3 s, and a
    16 kHz S16LE microphone in 0.1 s chunks that stops for 5 s (overlapping the camera's gap by 1 s)."""
    camera_off, microphone_off = (5.1, 8.1), (7.1, 12.1)
    frames = _scene(15 * 30)
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(frames)) / 30
    jitter[0] = 0  # the first frame and the first audio chunk start the bag's clock together
    base = 1_700_000_000 * 10**9  # stamps of a real clock
    messages = [("/audio/audio_info", base, _audio_info(16000, "S16LE"))]
    for i, image in enumerate(frames):
        t = i / 30 + jitter[i]
        if not camera_off[0] <= t < camera_off[1]:
            ns = base + round(t * 1e9)
            messages.append(("/camera/image/compressed", ns, _compressed(ns, image)))
    tone = (0.3 * np.sin(np.arange(15 * 16000) * 2 * np.pi * 440 / 16000) * 32767).astype("<i2")
    for k in range(150):
        if not microphone_off[0] <= k / 10 < microphone_off[1]:
            ns = base + k * 100_000_000
            messages.append(("/audio/audio", ns, _audio(ns, tone[k * 1600 : (k + 1) * 1600].tobytes())))
    return write_bag(path, messages, storage), camera_off, microphone_off


@pytest.mark.e2e
@pytest.mark.parametrize("storage", ["mcap", "db3"])
def test_bag_gaps_are_missing_modalities_window_by_window(onnx_student, tmp_path, capsys, storage):
    bag, camera_off, microphone_off = _gap_bag(tmp_path / "robot", storage)
    topics = ["--image-topic", "/camera/image/compressed", "--audio-topic", "/audio/audio"]
    argv = ["predict", str(onnx_student), str(bag), *topics, "--window", "2", "--hop", "0.5", "--json"]
    assert main(argv) == 0
    windows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [w["end"] for w in windows] == list(np.arange(2.0, 15.01, 0.5))  # seconds from the first message
    for w in windows:
        off = {  # seconds of the window each sensor was silent
            sensor: max(0.0, min(w["end"], stop) - max(w["start"], start))
            for sensor, (start, stop) in (("camera", camera_off), ("microphone", microphone_off))
        }
        assert all(abs(seconds - 0.25) > 0.05 for seconds in off.values())  # none near the tolerance
        expected = [k for k, sensor in (("V", "camera"), ("F", "camera"), ("A", "microphone")) if off[sensor] < 0.25]
        assert w["modalities"] == expected, w
        assert bool(w["actions"]) == bool(expected) and set(w["missing"]) == {"V", "F", "A"} - set(expected)
    used = {tuple(w["modalities"]) for w in windows}
    assert used == {("V", "F", "A"), ("A",), ("V", "F"), ()}  # every combination the gaps make
    assert main([*argv[:-1]]) == 0  # the table form: one line per window
    lines = capsys.readouterr().out.splitlines()
    silent = next(i for i, w in enumerate(windows) if not w["modalities"])
    assert len(lines) == len(windows) and "no prediction  [not used: V no frames for" in lines[silent]


@pytest.mark.e2e
def test_a_bag_of_a_decoded_mp4_predicts_as_the_stream_of_the_mp4(onnx_student, synth_videos, tmp_path, capsys):
    """Raw rgb8 Images and unstamped F32LE audio chunks (24 kHz) of the MP4's decoded frames and samples
    give, window for window, what `karmma predict --stream` gives on the MP4."""
    from karmma.data.video import iter_audio, iter_video_frames, probe_video

    video = next(p for p in sorted(synth_videos[0].rglob("*.MP4")) if probe_video(p).has_audio)
    frames = list(iter_video_frames(video, threads=0))
    rate = frames[0].rate
    audio = np.concatenate(list(iter_audio(video, 24000)))[: round(len(frames) / rate * 24000)]  # up to the last frame
    messages = [("/camera/image_raw", round(f.time * 1e9), _image(round(f.time * 1e9), f.image)) for f in frames]
    for first in range(0, len(audio), 2400):
        messages.append(("/mic/audio", first * 1_000_000 // 24, _audio(None, audio[first : first + 2400].tobytes())))
    # named after the video: under the frame recipe's epic-id rule the name gives the flow stride
    bag = write_bag(tmp_path / video.stem, messages, "db3")
    options = ["--window", "2", "--hop", "0.5", "--json"]
    assert main(["predict", str(onnx_student), str(video), "--stream", *options]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    topics = ["--image-topic", "/camera/image_raw", "--audio-topic", "/mic/audio", "--audio-format", "F32LE:24000"]
    assert main(["predict", str(onnx_student), str(bag.parent), *topics, *options]) == 0
    replayed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(streamed) == len(replayed) >= 5 and rate == 24  # 2 s windows every 0.5 s over a video of 4-5 s
    for a, b in zip(streamed, replayed):
        assert (b["start"], b["end"]) == pytest.approx((a["start"], a["end"]), abs=1e-6)
        assert a["modalities"] == b["modalities"] == ["V", "F", "A"]
        for head in a["heads"]:
            assert [c["class"] for c in a["heads"][head]] == [c["class"] for c in b["heads"][head]]
            expected = [c["probability"] for c in a["heads"][head]]
            assert [c["probability"] for c in b["heads"][head]] == pytest.approx(expected, abs=1e-4)


@pytest.mark.e2e
def test_bag_command_errors_are_one_line(onnx_student, synth_videos, tmp_path, capsys):
    bag = write_bag(tmp_path / "chat", [("/chat", 0, TYPES["std_msgs/msg/String"](data="hello"))])
    video = str(next(synth_videos[0].rglob("*.MP4")))
    for argv, expected in (
        ([str(bag), "--audio-topic", "/chat"], "--audio-topic /chat is of type std_msgs/msg/String"),
        ([str(bag)], "is a ROS 2 bag: name its topics with --image-topic"),
        ([video, "--image-topic", "/camera"], "read ROS 2 bags; " + video + " is not one"),
        ([str(bag), "--image-topic", "/chat", "--start", "1"], "--start does not apply to a ROS 2 bag"),
    ):
        assert main(["predict", str(onnx_student), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("karmma predict: error:") and expected in err, err
