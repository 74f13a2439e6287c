"""The live viewer's parts (`rtseg view`: rtseg.commands.view; the viewer process: viewer.py):

- overlay.py  pure numpy/OpenCV: decode RLE masks, draw translucent masks, outlines, labels
- objects.py  pure: which object a click goes to, known ids, scores
- feed.py     background threads: masks/status/prompt (and JPEG frames) from ZeroMQ, frames
              from the shared-memory ring; matches masks to frames by frame_index, composes
              the newest view
- prompts.py  a thread that sends prompts over the control socket, never blocking the GUI
- hud.py      the heads-up line's text
- window.py   the Qt window (pyqtgraph): image, clicks/drag -> prompts, keys, object list
- qtfix.py    a guard against PySide6 6.12.0's reference leak on Signal.emit() (Python 3.11)
"""
