"""How much of the pretrained model trains: the strategy flags fine-tuning and distillation share
(nlp_reuse.strategies applies them; nlp_reuse.config builds the commands' arguments on them)."""

from dataclasses import dataclass, field

from nlp_reuse.errors import check_range

STRATEGIES = ("full", "head_only", "partial", "lora", "ia3", "features")


@dataclass
class StrategyArguments:
    """How much of the pretrained model trains (nlp_reuse.strategies); shared by fine-tuning and distillation."""

    strategy: str = field(
        default="full",
        metadata={"help": "full: every parameter trains | head_only: frozen encoder, only the head (classifier and "
                          "pooler) trains | partial: the top --unfreeze_top_k layers and the head train | lora / "
                          "ia3: PEFT adapters in the encoder layers plus the head | features (finetune.py only): "
                          "logistic regression on the frozen encoder's mean-pooled embeddings."},
    )
    unfreeze_top_k: int = field(
        default=2, metadata={"help": "--strategy partial: number K of top encoder layers that train (1..layers)."}
    )
    gradual_unfreeze_every: float | None = field(
        default=None,
        metadata={"help": "--strategy partial: start with the head only and unfreeze one more top layer every E "
                          "epochs until K train (ULMFiT-style gradual unfreezing; one process only)."},
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={"help": "D in (0, 1]: each encoder layer's learning rate is the one above it times D, the head at "
                          "--learning_rate, the embeddings below the lowest layer (1.0 turns it off)."},
    )
    lora_r: int = field(default=8, metadata={"help": "--strategy lora: rank r of the LoRA update matrices."})
    lora_alpha: int = field(default=16, metadata={"help": "--strategy lora: scaling alpha (update scaled by alpha/r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "--strategy lora: dropout on the LoRA input, [0, 1)."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={"help": "--strategy lora / ia3: comma-separated Linear modules of the encoder layers that get "
                          "adapters, matched by name suffix (default lora: query,key,value,dense, i.e. every "
                          "Linear of the layers; ia3: key,value,output.dense)."},
    )
    merge_adapter: bool = field(
        default=True,
        metadata={"help": "--strategy lora / ia3: also merge the adapter into the weights and save a standard model "
                          "folder that loads without peft (the adapter folder is always saved)."},
    )
    features_logreg_c: float = field(
        default=1.0,
        metadata={"help": "--strategy features: inverse L2 regularisation strength C of the logistic regression."},
    )

    def check_strategy_ranges(self, allowed: tuple[str, ...] = STRATEGIES) -> None:
        """Range checks that need no model (K against the layer count and module names are checked on the model)."""
        if self.strategy not in allowed:
            why = " (features trains no network: scripts/finetune.py only)" if self.strategy in STRATEGIES else ""
            raise ValueError(f"Unknown --strategy {self.strategy!r}{why}: expected one of {', '.join(allowed)}.")
        if self.unfreeze_top_k < 1:
            raise ValueError(f"--unfreeze_top_k must be >= 1, got {self.unfreeze_top_k} (use --strategy head_only "
                             "to train the head alone).")
        if self.gradual_unfreeze_every is not None and self.gradual_unfreeze_every <= 0:
            raise ValueError(f"--gradual_unfreeze_every must be > 0 epochs, got {self.gradual_unfreeze_every}.")
        check_range("layerwise_lr_decay", self.layerwise_lr_decay, 0.0, 1.0, low_open=True)
        if self.lora_r < 1:
            raise ValueError(f"--lora_r must be >= 1, got {self.lora_r}.")
        if self.lora_alpha <= 0:
            raise ValueError(f"--lora_alpha must be > 0, got {self.lora_alpha}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.features_logreg_c <= 0:
            raise ValueError(f"--features_logreg_c must be > 0, got {self.features_logreg_c}.")
