"""params.yaml as frozen dataclasses, one per section; e2e.config.load fills them. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataParams:
    source: str = "synthetic"
    seed: int = 1234


@dataclass(frozen=True)
class DownloadParams:
    base_url: str = "https://cernbox.cern.ch/remote.php/dav/public-files"
    archive_url: str = "https://cernbox.cern.ch/index.php/s"  # <archive_url>/<share>/download: the whole share
    mode: str = "auto"  # files | archive | auto (e2e.stages.download)
    retries: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 60.0
    chunk_mb: float = 4.0


@dataclass(frozen=True)
class DatasetParams:
    files: tuple[str, ...] | None = None  # a subset of the registry's files (e.g. one jet-mass file); None: all


@dataclass(frozen=True)
class ConvertParams:
    dtype: str = "float16"
    channels: tuple[int, ...] | None = None  # None keeps every stored channel
    scale: tuple[float, ...] | None = None
    clip: float | None = None
    zero_below: float = 0.0
    nonfinite: str = "error"
    batch_rows: int = 256


@dataclass(frozen=True)
class SplitParams:
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    target_bins: int = 10


@dataclass(frozen=True)
class RuntimeParams:
    device: str = "auto"
    amp: bool = True  # bf16 autocast of the training steps on a GPU; predictions are always float32
    channels_last: bool = True
    tf32: bool = False  # TF32 float32 matmuls/convolutions on a GPU: faster, ~1e-3 relative error
    compile: bool = False
    resident_max_gb: float = 8.0  # the sparse split stays on the GPU up to this size, else in host memory
    convert_workers: int = 0  # raw files converted in parallel, one process each; 0: one per 4 cores
    threads: int = 0
    nproc: int = 1  # >1: `train` relaunches itself under torchrun with this many processes (DDP)


@dataclass(frozen=True)
class EnsembleParams:
    """`train.<task>.ensemble`: `members` models, their predictions averaged (e2e.training.ensemble); mode
    seeds: each on the whole training split with seed + k, subsets: each on its own disjoint share."""

    members: int = 1
    mode: str = "seeds"


@dataclass(frozen=True)
class TrainParams:
    model: str
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"
    scheduler_kwargs: dict = field(default_factory=dict)
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    label_smoothing: float = 0.0  # classification targets pulled towards 0.5 by this fraction
    augment: tuple[str, ...] = ()  # names in e2e.training.augment.AUGMENTATIONS
    channels: tuple[int, ...] | None = None  # the converted channels the model sees; None: all
    patience: int = 0  # early stopping after this many epochs without a better val metric; 0 disables
    seed: int = 0
    # dataclasses.asdict gives {"members": 1, "mode": "seeds"}, the dict this field was: the resume
    # fingerprint (e2e.training.resume) stays the same
    ensemble: EnsembleParams = EnsembleParams()
    # the point models only (e2e.runtime.points): the most energetic points kept per event; None: all
    max_points: int | None = None
    # jet-level inputs (converted observers, e.g. pt), concatenated after the pooling; any model
    global_inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = 256
    roc_points: int = 200
    bootstrap: int = 1000  # resamples for the 95 % intervals (fixed seed: reruns are identical)
    summary_bins: int = 5  # bins of true mass and pT for the binned resolution in metrics.json
    working_points: tuple[float, ...] = (0.5, 0.8)  # signal efficiencies of the rejections and binned plots
    bins: dict = field(default_factory=dict)  # task -> variable -> bin edges, or a number of equal bins


@dataclass(frozen=True)
class ExportParams:
    batch_size: int = 256  # images per batch of the parity check
    parity_batches: int = 4  # first test-split batches on which onnxruntime must match PyTorch
    tolerance: float = 1e-4  # |onnx - torch| <= tolerance * max(1, |torch|): absolute on probabilities
    opset: int = 18


@dataclass(frozen=True)
class TuneParams:
    """`e2e tune <task>`: read by no stage, so changing it invalidates nothing."""

    sampler: str = "tpe"  # tpe | random
    seed: int = 0
    space: dict = field(default_factory=dict)  # params key -> {low, high[, log, step]} or {choices: [...]}


@dataclass(frozen=True)
class Params:
    data: DataParams
    datasets: dict[str, DatasetParams]
    download: DownloadParams
    synthetic: dict[str, dict]
    convert: dict[str, ConvertParams]
    split: SplitParams
    runtime: RuntimeParams
    train: dict[str, TrainParams]
    evaluate: EvaluateParams
    export: ExportParams = ExportParams()
    tune: dict[str, TuneParams] = field(default_factory=dict)

    def files_of(self, dataset: str) -> tuple[str, ...] | None:
        """`datasets.<dataset>.files`: the chosen subset of the registry's files, or None for all of them."""
        return self.datasets[dataset].files if dataset in self.datasets else None
