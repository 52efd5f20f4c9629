"""Official JAX/Flax checkpoint -> Keras converter (``maxim_tf.conversion``)."""

from maxim_tf.conversion.checkpoint import (
    ConversionError,
    ReferenceMismatchError,
    convert_checkpoint,
    expected_parameters,
    infer_config,
    load_official_params,
)

__all__ = ["ConversionError", "ReferenceMismatchError", "convert_checkpoint",
           "expected_parameters", "infer_config", "load_official_params"]
