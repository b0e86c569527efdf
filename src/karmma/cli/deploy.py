"""``karmma export`` and ``karmma predict``: a trained student as files, and its predictions on videos,
streams and ROS 2 bags (karmma.deploy)."""

from __future__ import annotations

import argparse
import json
import sys

from karmma.cli.arguments import NON_NEGATIVE_FLOAT, POSITIVE_FLOAT, POSITIVE_INT, command_parser, number
from karmma.modalities import parse_subset
from karmma.train_config import stage_names


def add_export(commands) -> None:
    exp = command_parser(
        commands,
        "export",
        "a trained student as safetensors, one ONNX graph and/or split ONNX graphs",
        "  karmma export karmma-demo-quick/runs/student --onnx-split student-onnx --safetensors student.safetensors\n",
        "The split form (one graph per extractor plus a fusion graph) skips the\n"
        "extractors of missing sensors; 'karmma predict' runs it.",
    )
    exp.add_argument(
        "student",
        help=f"a {' / '.join(stage_names('student'))} run folder or checkpoint (.ckpt) or exported .safetensors",
    )
    exp.add_argument("--safetensors", metavar="OUT", help="write the weights with config, class names and frame recipe")
    exp.add_argument(
        "--onnx", metavar="OUT", help="write one ONNX graph taking every modality input and the availability mask"
    )
    exp.add_argument(
        "--onnx-split", metavar="DIR", help="write one ONNX graph per extractor plus a fusion graph to DIR"
    )


def export_command(args: argparse.Namespace) -> int:
    from karmma.artifacts import load_model, save_student
    from karmma.deploy.onnx_export import export_onnx, export_split_onnx
    from karmma.train_config import stage_names

    if not (args.safetensors or args.onnx or args.onnx_split):
        raise ValueError("nothing to write: give --safetensors, --onnx and/or --onnx-split")
    model, info = load_model(args.student, stages=stage_names("student"))
    written = []
    if args.safetensors:
        written.append(save_student(model, info, args.safetensors))
    if args.onnx:
        written.append(export_onnx(model, info, args.onnx))
    if args.onnx_split:
        written.append(export_split_onnx(model, info, args.onnx_split))
    for path in written:
        size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"wrote {path} ({size / 2**20:.2f} MB)", file=sys.stderr)
    recipe = info.preparation.describe() if info.preparation else "unknown (predict will assume one, with a warning)"
    print(f"frame recipe carried by the export: {recipe}", file=sys.stderr)
    return 0


def add_predict(commands) -> None:
    pred = command_parser(
        commands,
        "predict",
        "predict the action in a video with a trained student",
        "  karmma predict student-onnx karmma-demo-quick/recordings/main/P07/videos/P07_01.MP4 --start 0.4 --end 1.4\n"
        "  karmma predict student-onnx karmma-demo-quick/recordings/main/P07/videos/P07_01.MP4 --stream --drop-sensors 0.3\n"
        "  karmma predict student-onnx robot.mcap --image-topic /camera/image_raw/compressed --audio-topic /audio/audio\n",
        "Frames, flow and audio are computed from the video by the frame recipe the model\n"
        "records (flow method, short side, flow stride rule), as for its training data.\n"
        "A modality whose media end before the segment does is not used (0.1 s tolerated).\n"
        "With --stream, one prediction per sliding window; --drop-sensors simulates\n"
        "failing sensors. A ROS 2 bag gives one prediction per window; a sensor whose\n"
        "messages stop is missing.",
    )
    pred.add_argument("model", help="a .onnx graph, split-ONNX folder, .safetensors or .ckpt student")
    pred.add_argument(
        "input",
        help="a video file; with --stream also - (a video stream on stdin) or a camera index; "
        "or a ROS 2 bag (.mcap, .db3 or its folder) with --image-topic / --audio-topic",
    )
    pred.add_argument("--modalities", help="which of V, F, A to use, e.g. V,F (default: all the model has)")
    pred.add_argument(
        "--top-k",
        type=POSITIVE_INT,
        default=5,
        help="number of most likely actions, verbs and nouns printed (default %(default)s)",
    )
    pred.add_argument("--json", action="store_true", help="machine-readable output (one JSON object per line)")
    pred.add_argument("--start", type=NON_NEGATIVE_FLOAT, help="segment start in seconds (default: the beginning)")
    pred.add_argument("--end", type=POSITIVE_FLOAT, help="segment end in seconds (default: the end)")
    pred.add_argument(
        "--flow",
        choices=["dis", "tvl1"],
        help="optical flow method, for a model that records no frame recipe (default: the recorded one; must agree)",
    )
    pred.add_argument(
        "--short-side",
        type=number(int, 8),
        help="frame short side in pixels, for a model that records no frame recipe (default: the recorded one)",
    )
    pred.add_argument(
        "--flow-stride",
        type=POSITIVE_INT,
        metavar="FRAMES",
        help="frames between the two frames of each flow pair, for a model that records no frame recipe "
        "(default: the recorded rule, evaluated on the video as karmma prepare did)",
    )
    pred.add_argument("--threads", type=POSITIVE_INT, help="CPU threads for the model (default: the runtime's choice)")
    pred.add_argument("--stream", action="store_true", help="one prediction per sliding window")
    pred.add_argument(
        "--window",
        type=POSITIVE_FLOAT,
        default=2.0,
        help="window length in seconds, with --stream (default %(default)s)",
    )
    pred.add_argument(
        "--hop",
        type=POSITIVE_FLOAT,
        default=1.0,
        help="seconds between window starts, with --stream (default %(default)s)",
    )
    pred.add_argument(
        "--drop-sensors",
        type=number(float, 0, 1, high_open=True),
        default=0.0,
        metavar="RATE",
        help="simulate sensor failures (--stream): each modality is down this fraction of the time",
    )
    pred.add_argument(
        "--drop-seconds",
        type=POSITIVE_FLOAT,
        default=3.0,
        help="mean length of a sensor failure in seconds (default %(default)s)",
    )
    pred.add_argument("--seed", type=int, default=0, help="seed of the sensor-failure simulation (default %(default)s)")
    bag = pred.add_argument_group("ROS 2 bags (pip install 'karmma[ros]')")
    bag.add_argument(
        "--image-topic",
        metavar="TOPIC",
        help="camera topic: sensor_msgs/msg/Image (rgb8, bgr8, mono8) or CompressedImage",
    )
    bag.add_argument(
        "--audio-topic", metavar="TOPIC", help="microphone topic: audio_common_msgs/msg/AudioData or AudioDataStamped"
    )
    bag.add_argument(
        "--audio-format",
        metavar="FORMAT:RATE[:CHANNELS]",
        help="raw PCM layout of the audio topic, e.g. S16LE:16000:1 (default: from the bag's AudioInfo topic)",
    )
    bag.add_argument(
        "--fps", type=POSITIVE_FLOAT, help="frame rate of the grid frames are placed on (default: measured from stamps)"
    )
    bag.add_argument(
        "--tolerance",
        type=POSITIVE_FLOAT,
        default=0.25,
        metavar="SECONDS",
        help="a sensor silent for longer than this within a window is missing there (default %(default)s)",
    )


def predict_command(args: argparse.Namespace) -> int:
    from karmma.data.media import MediaError
    from karmma.deploy.recognizer import Recognizer
    from karmma.deploy.rosbag import is_bag

    try:
        recognizer = Recognizer.load(
            args.model, threads=args.threads, flow=args.flow, short_side=args.short_side, flow_stride=args.flow_stride
        )
        modalities = parse_subset(args.modalities) if args.modalities else None
        if args.image_topic or args.audio_topic or is_bag(args.input):
            return _predict_bag(args, recognizer, modalities)
        if args.stream:
            return _predict_stream(args, recognizer, modalities)
        if args.drop_sensors:
            raise ValueError("--drop-sensors simulates sensor failures over time: use it with --stream")
        prediction = recognizer.predict_file(args.input, modalities, args.start, args.end, args.top_k)
    except MediaError as error:  # unreadable video: one line, like the other errors
        raise ValueError(str(error)) from None
    if args.json:
        print(
            json.dumps(
                {"input": args.input, "model": args.model, "backend": recognizer.backend, **prediction.to_dict()}
            )
        )
    else:
        print(prediction.format_table())
    if "A" in prediction.missing and prediction.missing["A"] == "no audio track":
        print(f"note: {args.input} has no audio track; predicted without A", file=sys.stderr)
    return 0


def _predict_stream(args: argparse.Namespace, recognizer, modalities) -> int:
    from karmma.deploy.stream import SensorFailures, stream_predictions

    failures = None
    if args.drop_sensors:
        failures = SensorFailures(
            recognizer.file_modalities(modalities), args.drop_sensors, args.drop_seconds, args.seed
        )
    for window in stream_predictions(recognizer, args.input, modalities, args.window, args.hop, failures, args.top_k):
        print(json.dumps(window.to_dict()) if args.json else window.format_line(), flush=True)
    return 0


def _predict_bag(args: argparse.Namespace, recognizer, modalities) -> int:
    from karmma.deploy.rosbag import AudioFormat, bag_predictions, is_bag

    if not is_bag(args.input):
        raise ValueError(
            f"--image-topic and --audio-topic read ROS 2 bags; {args.input} is not one "
            "(a .mcap or .db3 file, or a folder with metadata.yaml)"
        )
    for flag, value in (("--start", args.start), ("--end", args.end), ("--drop-sensors", args.drop_sensors or None)):
        if value is not None:
            raise ValueError(f"{flag} does not apply to a ROS 2 bag (its sensors' own gaps are the missing modalities)")
    windows = bag_predictions(
        recognizer,
        args.input,
        args.image_topic,
        args.audio_topic,
        AudioFormat.parse(args.audio_format) if args.audio_format else None,
        args.window,
        args.hop,
        modalities=modalities,
        fps=args.fps,
        tolerance=args.tolerance,
        top_k=args.top_k,
    )
    for window in windows:
        print(json.dumps(window.to_dict()) if args.json else window.format_line(), flush=True)
    return 0
