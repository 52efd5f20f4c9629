"""maxim_tf: MAXIM (CVPR 2022) for TensorFlow / Keras 3."""

from setuptools import setup

TF = "2.21.*"

setup(
    name="maxim-tf",
    version="0.1.0",
    description="MAXIM (Multi-Axis MLP for Image Processing) in TensorFlow/Keras 3: "
                "exact official-checkpoint conversion, restore, training and export.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The library lives in maxim_tf/; conversion/, export/ and training/ are its
    # subpackages maxim_tf.conversion, maxim_tf.export, maxim_tf.training.
    # The trained default models of saved_models/ ship inside the wheel as
    # maxim_tf/saved_models/ (the .keras files and their model cards).
    packages=["maxim_tf", "maxim_tf.conversion", "maxim_tf.export", "maxim_tf.training",
              "maxim_tf.saved_models"],
    package_dir={
        "maxim_tf": "maxim_tf",
        "maxim_tf.conversion": "conversion",
        "maxim_tf.export": "export",
        "maxim_tf.training": "training",
        "maxim_tf.saved_models": "saved_models",
    },
    package_data={"maxim_tf.training": ["configs/*.json"],
                  "maxim_tf.saved_models": ["*.keras", "*.md"]},
    # TensorFlow itself is an extra so that a CPU box installs the small
    # tensorflow-cpu wheel ([cpu]) and a GPU box gets tensorflow[and-cuda] ([gpu]).
    install_requires=[
        "keras>=3.10",
        "numpy>=1.26",
        "pillow>=10",
        "tqdm>=4.66",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={TF}"],
        "gpu": [f"tensorflow[and-cuda]=={TF}"],
        # TF Serving warm-up records also need tensorflow-serving-api, which
        # requires the `tensorflow` distribution by name (it would pull the GPU
        # build next to tensorflow-cpu): install it with --no-deps, as
        # scripts/_env.sh does.
        "export": ["ai-edge-litert>=2.3", "tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20",
                   "grpcio>=1.60"],
        "train": ["tensorflow-datasets>=4.9.10", f"tensorboard=={TF}"],
        "bench": ["matplotlib>=3.8", "bm3d>=4.0"],
        "test": ["pytest>=8"],
    },
    entry_points={"console_scripts": ["maxim-tf=maxim_tf.cli:main"]},
)
