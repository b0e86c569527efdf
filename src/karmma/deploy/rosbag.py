"""ROS 2 bags: one prediction per window from a recorded camera and microphone.

Reads ``.mcap`` and sqlite3 ``.db3`` files, or a bag folder (with its
``metadata.yaml``), with rosbags (pure Python, no ROS install: ``pip install
'karmma[ros]'``), and replays the messages into a
:class:`~karmma.deploy.session.Session` by their header stamps, in the order
they were recorded. Supported messages:

* images: ``sensor_msgs/msg/Image`` (``rgb8``, ``bgr8``, ``mono8``) and
  ``sensor_msgs/msg/CompressedImage`` (JPEG, PNG);
* audio: ``audio_common_msgs/msg/AudioData`` and ``AudioDataStamped``
  (ros-drivers/audio_common: raw PCM bytes, the stamp taken as the time of
  the chunk's first sample; ``AudioData`` has no header, so its recording
  time is used). The sample format, rate and channels come from
  ``--audio-format`` (e.g. ``S16LE:16000:1``), else from the bag's
  ``audio_common_msgs/msg/AudioInfo`` topic. Their definitions are not in
  rosbags' type store; they are registered here from their ``.msg`` text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from karmma.data.media import MediaError
from karmma.deploy.recognizer import Recognizer
from karmma.deploy.session import Session
from karmma.deploy.stream import WindowPrediction
from karmma.modalities import IMAGE_MODALITIES

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
AUDIO_TYPES = ("audio_common_msgs/msg/AudioData", "audio_common_msgs/msg/AudioDataStamped")
AUDIO_INFO_TYPE = "audio_common_msgs/msg/AudioInfo"
#: ros-drivers/audio_common's messages (ROS 2 branch), as .msg text
AUDIO_COMMON_MSGS = {
    "audio_common_msgs/msg/AudioData": "uint8[] data",
    "audio_common_msgs/msg/AudioDataStamped": "std_msgs/Header header\naudio_common_msgs/AudioData audio",
    AUDIO_INFO_TYPE: "uint8 channels\nuint32 sample_rate\nstring sample_format\nuint32 bitrate\nstring coding_format",
}
#: GStreamer sample formats (AudioInfo.sample_format) -> NumPy dtypes
SAMPLE_FORMATS = {
    "S8": "i1",
    "U8": "u1",
    "S16LE": "<i2",
    "S16BE": ">i2",
    "S32LE": "<i4",
    "S32BE": ">i4",
    "F32LE": "<f4",
    "F32BE": ">f4",
    "F64LE": "<f8",
    "F64BE": ">f8",
}
#: how long (s) after a window's end the replay waits for its late messages before predicting it
LATENESS = 1.0


def is_bag(path: str | Path) -> bool:
    """A ``.mcap`` or ``.db3`` file, or a folder with a rosbag2 ``metadata.yaml``."""
    path = Path(path)
    return path.suffix in (".mcap", ".db3") or (path / "metadata.yaml").is_file()


def typestore():
    """ROS 2 Humble's message types plus audio_common_msgs (for bags that carry no definitions)."""
    try:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    except ImportError:
        raise ValueError("reading ROS 2 bags needs rosbags: pip install 'karmma[ros]'") from None
    store = get_typestore(Stores.ROS2_HUMBLE)
    for name, text in AUDIO_COMMON_MSGS.items():
        store.register(get_types_from_msg(text, name))
    return store


@dataclass(frozen=True)
class AudioFormat:
    """Raw PCM audio: a GStreamer sample format (``S16LE``, ``F32LE``, ...), a rate and interleaved channels."""

    sample_format: str
    rate: int
    channels: int = 1

    def __post_init__(self):
        if self.sample_format not in SAMPLE_FORMATS:
            raise ValueError(
                f"audio sample format {self.sample_format!r} is not supported ({', '.join(SAMPLE_FORMATS)})"
            )
        if self.rate <= 0 or self.channels <= 0:
            raise ValueError(f"audio rate and channels must be positive, got {self.rate} and {self.channels}")

    @classmethod
    def parse(cls, text: str) -> AudioFormat:
        """``FORMAT:RATE[:CHANNELS]``, e.g. ``S16LE:16000`` or ``F32LE:48000:2``."""
        parts = text.split(":")
        try:
            return cls(parts[0].upper(), int(parts[1]), int(parts[2]) if len(parts) > 2 else 1)
        except (IndexError, ValueError) as error:
            if isinstance(error, ValueError) and "not supported" in str(error):
                raise
            raise ValueError(f"--audio-format {text!r}: expected FORMAT:RATE[:CHANNELS], e.g. S16LE:16000:1") from None

    @classmethod
    def from_info(cls, info, topic: str) -> AudioFormat:
        """From an ``audio_common_msgs/msg/AudioInfo`` message (raw PCM only)."""
        if info.coding_format.lower() not in ("", "wave", "wav", "raw", "pcm"):
            raise ValueError(
                f"{topic}: audio coding format {info.coding_format!r} is not supported: record raw PCM "
                "(audio_capture's format:=wave) or give --audio-format"
            )
        return cls(info.sample_format.upper(), int(info.sample_rate), int(info.channels))

    def samples(self, data) -> np.ndarray:
        """A message's ``data`` bytes as samples ``[n, channels]`` (PCM integers or floats); a trailing
        partial sample is dropped."""
        dtype = np.dtype(SAMPLE_FORMATS[self.sample_format])
        raw = _bytes(data)
        frame = dtype.itemsize * self.channels
        return raw[: len(raw) // frame * frame].view(dtype).reshape(-1, self.channels)


def _bytes(data) -> np.ndarray:
    """uint8 ``[n]`` of a ``uint8[]`` field: a NumPy array (rosbags) or bytes / ``array.array`` (rclpy)."""
    return np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.astype(np.uint8, copy=False)


def image_from_message(message, topic: str) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` (or grey ``[H, W]``) from an Image or CompressedImage message (of a bag,
    or of rclpy)."""
    import cv2

    if hasattr(message, "encoding"):  # sensor_msgs/msg/Image
        channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(message.encoding)
        if channels is None:
            raise ValueError(f"{topic}: image encoding {message.encoding!r} is not supported (rgb8, bgr8, mono8)")
        rows = _bytes(message.data).reshape(message.height, message.step)  # rows may be padded
        image = rows[:, : message.width * channels].reshape(message.height, message.width, channels)
        if message.encoding == "bgr8":
            return image[..., ::-1]
        return image[..., 0] if channels == 1 else image
    kind = message.format.lower()
    if not any(name in kind for name in ("jpeg", "jpg", "png")):
        raise ValueError(f"{topic}: compressed image format {message.format!r} is not supported (JPEG, PNG)")
    bgr = cv2.imdecode(_bytes(message.data), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaError(f"{topic}: undecodable {message.format} image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _stamp_ns(message, recorded_ns: int) -> int:
    """The header stamp (ns), or the recording time for a message without one (or with a zero stamp)."""
    header = getattr(message, "header", None)
    if header is None:
        return recorded_ns
    stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
    return stamp or recorded_ns


def _topic(reader, topic: str, types: Sequence[str], option: str, path: Path):
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        have = ", ".join(sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections}))
        raise ValueError(f"{path}: no topic {topic} (it has {have or 'no topics'})")
    msgtype = connections[0].msgtype
    if msgtype not in types:
        raise ValueError(
            f"{option} {topic} is of type {msgtype}, which is not supported; it takes {' or '.join(types)}"
        )
    return connections


def _audio_format(reader, topic: str) -> AudioFormat:
    infos = [c for c in reader.connections if c.msgtype == AUDIO_INFO_TYPE]
    namespace = topic.rsplit("/", 1)[0]
    infos = [c for c in infos if c.topic.rsplit("/", 1)[0] == namespace] or infos  # the one beside the audio topic
    if len({c.topic for c in infos}) != 1:
        found = f"{len({c.topic for c in infos})} {AUDIO_INFO_TYPE} topics" if infos else f"no {AUDIO_INFO_TYPE} topic"
        raise ValueError(
            f"{topic}: the audio format is unknown (the bag has {found}); give --audio-format, e.g. S16LE:16000:1"
        )
    for connection, _, raw in reader.messages(connections=infos):
        return AudioFormat.from_info(reader.deserialize(raw, connection.msgtype), connection.topic)
    raise ValueError(f"{infos[0].topic}: no {AUDIO_INFO_TYPE} message; give --audio-format, e.g. S16LE:16000:1")


def bag_predictions(
    recognizer: Recognizer,
    path: str | Path,
    image_topic: str | None = None,
    audio_topic: str | None = None,
    audio_format: AudioFormat | None = None,
    window: float = 2.0,
    hop: float = 1.0,
    **options,
) -> Iterator[WindowPrediction]:
    """One :class:`WindowPrediction` per window of the bag (times in seconds from its first message).

    ``options`` go to :class:`Session` (``modalities``, ``fps``, ``tolerance``, ``top_k``). A
    window is predicted once the replay has reached :data:`LATENESS` s past its end."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if not (image_topic or audio_topic):
        raise ValueError(f"{path} is a ROS 2 bag: name its topics with --image-topic and/or --audio-topic")
    store = typestore()
    from rosbags.highlevel import AnyReader, AnyReaderError

    try:
        reader = AnyReader([path], default_typestore=store)
        reader.open()
    except (AnyReaderError, OSError, KeyError) as error:
        raise ValueError(f"{path}: not a readable ROS 2 bag ({error})") from None
    try:
        connections = []
        if image_topic:
            connections += _topic(reader, image_topic, IMAGE_TYPES, "--image-topic", path)
        if audio_topic:
            connections += _topic(reader, audio_topic, AUDIO_TYPES, "--audio-topic", path)
            audio_format = audio_format or _audio_format(reader, audio_topic)
        wanted = options.pop("modalities", None) or [
            k for k in recognizer.modalities if (k in IMAGE_MODALITIES and image_topic) or (k == "A" and audio_topic)
        ]
        session = Session(recognizer, window, hop, modalities=wanted, name=path.stem, **options)
        origin = None
        for connection, recorded, raw in reader.messages(connections=connections):
            message = reader.deserialize(raw, connection.msgtype)
            stamp = _stamp_ns(message, recorded)
            origin = stamp if origin is None else origin
            t = (stamp - origin) / 1e9
            if connection.topic == image_topic:
                session.push_frame(t, image_from_message(message, connection.topic))
            else:
                data = message.audio.data if hasattr(message, "audio") else message.data
                session.push_audio(t, audio_format.samples(data), audio_format.rate)
            yield from session.poll(t - LATENESS)
        end = session.covered_until()
        if end is not None:
            yield from session.poll(end)
    finally:
        reader.close()
