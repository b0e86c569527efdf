"""KARMMA: multimodal knowledge distillation for egocentric action recognition
that keeps working when modalities (RGB, flow, audio, detections) go missing."""

__version__ = "0.1.0"
