"""ModelFactory: base models, dataset building, LoRA/QLoRA training, evaluation and lineage."""

from ledgerlm.factory.basemodels import (
    SMOLLM2_NAME,
    BaseModel,
    describe_model_dir,
    get_model,
    list_models,
    pull_smollm2,
    register_local,
    verify_model,
)
from ledgerlm.factory.dataset import (
    IGNORE,
    PackedBatch,
    PackedBlock,
    Segment,
    TrainingData,
    build_training_data,
    collate,
    pack_examples,
    record_kind,
    reference_pair,
    tokenize_record,
)
from ledgerlm.factory.errors import (
    DatasetError,
    FactoryError,
    ModelNotFoundError,
    TrainConfigError,
)
from ledgerlm.factory.evaluate import (
    EvalMetrics,
    EvalReport,
    Generation,
    compare_before_after,
    evaluate_model,
    exact_match,
    loss_curve_png,
    token_f1,
)
from ledgerlm.factory.finetune import FineTuneResult, fine_tune
from ledgerlm.factory.grads import LoraGradCapture, LoraLayer, capture_lora_grads, lora_layers
from ledgerlm.factory.lineage import (
    ModelCard,
    Mismatch,
    adapter_sha256,
    merge,
    read_lineage,
    verify_lineage,
    write_lineage,
)
from ledgerlm.factory.loading import load_adapted_model, load_base_model, load_tokenizer
from ledgerlm.factory.loss import example_losses, token_losses, token_owners
from ledgerlm.factory.tinymodel import tiny_random_model
from ledgerlm.factory.train import (
    BatchEnd,
    StepRecord,
    TrainConfig,
    TrainProgress,
    TrainResult,
    check_training_setup,
    linear_module_names,
    read_training,
    train,
)

__all__ = [
    "SMOLLM2_NAME", "BaseModel", "describe_model_dir", "get_model", "list_models", "pull_smollm2",
    "register_local", "verify_model",
    "IGNORE", "PackedBatch", "PackedBlock", "Segment", "TrainingData", "build_training_data",
    "collate", "pack_examples", "record_kind", "reference_pair", "tokenize_record",
    "DatasetError", "FactoryError", "ModelNotFoundError", "TrainConfigError",
    "EvalMetrics", "EvalReport", "Generation", "compare_before_after", "evaluate_model",
    "exact_match", "loss_curve_png", "token_f1",
    "FineTuneResult", "fine_tune",
    "LoraGradCapture", "LoraLayer", "capture_lora_grads", "lora_layers",
    "ModelCard", "Mismatch", "adapter_sha256", "merge", "read_lineage", "verify_lineage",
    "write_lineage",
    "load_adapted_model", "load_base_model", "load_tokenizer",
    "example_losses", "token_losses", "token_owners",
    "tiny_random_model",
    "BatchEnd", "StepRecord", "TrainConfig", "TrainProgress", "TrainResult",
    "check_training_setup", "linear_module_names", "read_training", "train",
]
