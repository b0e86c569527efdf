"""Datasets, media readers, clip sampling, preparation from raw video, SynthKitchen."""
