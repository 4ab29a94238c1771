"""The names params.yaml may use, for e2e.config.schema to check at load time, before any data is read.

The registries themselves live above config (tasks, sources.registry) or import torch (optim, augment,
models), so their names are repeated here; tests/unit/test_params.py fails when the two disagree.
Adding a model, optimizer, scheduler or augmentation means adding its name here too.
"""

from __future__ import annotations

# task -> kind (e2e.tasks.TASKS); each task reads the dataset of the same name (e2e.sources.registry)
TASK_KINDS = {"electron_photon": "classification", "quark_gluon": "classification", "jet_mass": "regression"}
DATASETS = tuple(TASK_KINDS)
MODELS = (
    "resnet15",
    "lenet5",
    "vgg12",
    "resnet18_mass",
    "mlp",
    "multikernel_cnn",
    "convnext_small",
    "vit_small",
    "resnet18",
    "resnet34",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "densenet121",
    "shufflenet_v2",
    "squeezenet",
    "particlenet",
    "particle_transformer",
    "gnn",
)  # e2e.models.MODELS
POINT_MODELS = ("particlenet", "particle_transformer", "gnn")  # e2e.models.POINT_MODELS: fed points, not images
# task -> the raw names its target may have (e2e.sources.registry target_keys) and the converted file's own:
# a jet-level input by one of these names, or a generator latent (truth_*), would hand the model its answer
TARGETS = {
    "electron_photon": ("y", "target"),
    "quark_gluon": ("y", "target"),
    "jet_mass": ("m", "genM", "am", "target"),
}
TIMM_MODEL = r"timm/[A-Za-z0-9_.]+"  # any model of the timm library by name (e2e.models.timm_zoo)
OPTIMIZERS = ("adam", "adamw", "sgd")  # e2e.training.optimizers.OPTIMIZERS
SCHEDULERS = ("none", "step", "cosine", "cosine_restarts", "onecycle")  # e2e.training.optimizers.SCHEDULERS
AUGMENTATIONS = ("flip_eta", "flip_phi", "roll_phi")  # e2e.training.augment.AUGMENTATIONS
DTYPES = ("float16", "float32", "float64")  # numpy storage dtypes of the converted values (no bfloat16 in numpy)
NONFINITE = ("error", "zero")  # e2e.conversion.preprocess.preprocess
ENSEMBLE_MODES = ("seeds", "subsets")  # e2e.training.ensemble.member_rows
SAMPLERS = ("tpe", "random")  # e2e.tune.runner.make_sampler (Optuna's TPESampler, RandomSampler)
DOWNLOAD_MODES = ("files", "archive", "auto")  # e2e.stages.download
DEVICES = ("auto", "cpu", "cuda")  # and cuda:<index> (e2e.runtime.device.select_device)
