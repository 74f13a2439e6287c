"""`rtseg cluster`: a config's cameras spread over the GPU hosts of a Ray cluster.

- placement.py  which cameras go together on one segmenter, and on which node (pure, no Ray)
- directory.py  the front door: camera -> node and endpoints, prompt logs kept on the head,
                the ZeroMQ `locate` endpoint for clients without Ray
- actors.py     rtseg's own capture and segmenter loops (run_capture, run_segmenter) as Ray actors
- manager.py    the `rtseg cluster` process: places cameras, moves a dead node's cameras,
                shows unplaced ones, stops every actor it started

Ray is an optional extra (`pip install rtseg[cluster]`); nothing here imports it at module level.
See docs/CLUSTER.md.
"""
