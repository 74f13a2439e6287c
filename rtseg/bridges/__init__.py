"""Bridges from rtseg's protocol to the tools people already use.

- foxglove_messages: rtseg messages as Foxglove messages (CompressedImage, ImageAnnotations
  with each object's outline as a polygon, JSON events and status) — used live and by the recorder;
- foxglove: the live Foxglove WebSocket server (`rtseg foxglove`, the `foxglove:` child of `rtseg run`);
- mjpeg: an MJPEG-over-HTTP overlay stream any player opens (`rtseg stream`).
"""
