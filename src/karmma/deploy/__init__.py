"""Deployment: ONNX export, the ``Recognizer`` API, raw-video pre-processing, streaming, latency.

See ``docs/deploy.md``.
"""

from karmma.deploy.recognizer import Prediction, Recognizer

__all__ = ["Prediction", "Recognizer"]
