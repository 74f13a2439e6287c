"""The streaming SAM 2 engine: exact SAM 2 masks, frame by frame, in memory that never grows."""
from rtseg.engine.checkpoints import CheckpointError
from rtseg.engine.models import MODELS, model_spec
from rtseg.engine.predictor import FrameResult, StreamingPredictor
from rtseg.engine.prompts import PromptError

__all__ = ["CheckpointError", "FrameResult", "MODELS", "PromptError", "StreamingPredictor", "model_spec"]
