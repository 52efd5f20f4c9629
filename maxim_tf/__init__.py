"""maxim_tf: MAXIM (Multi-Axis MLP for Image Processing) in TensorFlow / Keras 3."""

__version__ = "0.1.0"

from maxim_tf import layers  # noqa: F401  (registers the serializable layers)
from maxim_tf.model import MAXIM
from maxim_tf.presets import CHECKPOINTS, VARIANTS, variant_config
from maxim_tf.restore import Restorer

__all__ = ["MAXIM", "Restorer", "VARIANTS", "CHECKPOINTS", "variant_config", "layers",
           "__version__"]
