"""rtseg: streaming real-time camera segmentation with SAM 2."""

__version__ = "0.1.0"
