"""maxim_tf: MAXIM (CVPR 2022) for TensorFlow / Keras 3.

The import package is ``maxim_tf``. Three of its subpackages live in their own
top-level folders (the layout asked for): ``conversion/`` -> ``maxim_tf.conversion``,
``export/`` -> ``maxim_tf.export``, ``training/`` -> ``maxim_tf.training``, and the
shipped models of ``saved_models/`` -> ``maxim_tf.saved_models``. Every package
below those folders is found automatically (no hand-kept list), and the data
files the code reads at run time are listed once, in ``PACKAGE_DATA``;
``tests/test_packaging.py`` builds the wheel and checks both.
"""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).resolve().parent
TF = "2.21.*"
LITERT = 'ai-edge-litert>=2.3; platform_system != "Windows"'

# import package -> source folder
ROOTS = {
    "maxim_tf": "maxim_tf",
    "maxim_tf.conversion": "conversion",
    "maxim_tf.export": "export",
    "maxim_tf.training": "training",
    "maxim_tf.saved_models": "saved_models",
}

# Files other than .py that the code reads at run time.
PACKAGE_DATA = {
    "maxim_tf.training": ["configs/*.json"],
    "maxim_tf.saved_models": ["*.keras", "*.tflite", "*.md", "manifest.json"],
}


def _packages():
    packages, package_dir = [], {}
    for name, folder in ROOTS.items():
        packages.append(name)
        package_dir[name] = folder
        for sub in find_packages(where=str(HERE / folder)):
            packages.append(f"{name}.{sub}")
            package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(
    name="maxim-tf",
    version="0.1.0",
    description="MAXIM (Multi-Axis MLP for Image Processing) in TensorFlow/Keras 3: "
                "exact official-checkpoint conversion, restore, training and export.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="The maxim_tf authors",
    project_urls={
        "Paper": "https://arxiv.org/abs/2201.02973",
        "Official MAXIM code (JAX)": "https://github.com/google-research/maxim",
    },
    license="Apache-2.0",
    license_files=["LICENSE", "NOTICE"],
    keywords=["image restoration", "denoising", "deblurring", "MAXIM", "keras", "tensorflow",
              "tflite"],
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Image Processing",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data=PACKAGE_DATA,
    include_package_data=False,
    # TensorFlow itself is an extra so that a CPU box installs the small
    # tensorflow-cpu wheel ([cpu]) and a GPU box gets tensorflow[and-cuda] ([gpu]).
    install_requires=[
        "keras>=3.10",
        "numpy>=1.26",
        "pillow>=10",
        "tqdm>=4.66",
    ],
    extras_require={
        # LiteRT runs the shipped models' .tflite twins (no TensorFlow import, no
        # tracing: a one-photo restore starts in well under a second); where it has no
        # wheel, maxim_tf.Restorer falls back to the Keras graph.
        "cpu": [f"tensorflow-cpu=={TF}", LITERT],
        "gpu": [f"tensorflow[and-cuda]=={TF}", LITERT],
        # TF Serving warm-up records are written without tensorflow-serving-api
        # (maxim_tf.export.warmup encodes the few protobuf messages itself).
        "export": ["ai-edge-litert>=2.3", "tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20"],
        "train": ["tensorflow-datasets>=4.9.10", f"tensorboard=={TF}"],
        "bench": ["matplotlib>=3.8", "bm3d>=4.0"],
        # `maxim-tf restore-beam` (maxim_tf.tools.beam). Beam 2.77 supports tensorflow<2.22 and
        # needs protobuf<7; TensorFlow 2.21 takes protobuf>=6.31.1,<8: hence protobuf 6.x.
        # Dataflow also needs apache-beam[gcp] on the launching machine.
        "beam": ["apache-beam==2.77.*", "protobuf>=6.31.1,<7"],
        "test": ["pytest>=8"],
        "lint": ["ruff>=0.6"],
    },
    entry_points={"console_scripts": ["maxim-tf=maxim_tf.cli:console_main"]},
)
