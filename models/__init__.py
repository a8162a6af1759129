"""Deep Speech 2 models: ``build_model(cfg.model, num_features, num_classes)``."""
from models.config import ModelConfig, build_model
from models.deepspeech2 import DeepSpeech2

__all__ = ["DeepSpeech2", "ModelConfig", "build_model"]
