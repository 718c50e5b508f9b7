"""The configuration: ``schema`` declares and validates (dataclass schemas and their ranges; ``Settings``
carries each group's typed object), ``wording`` says what is wrong in one line. Objects are built from a
configuration in one place only, ``sdnn.build``. No torch here."""

from sdnn.config.schema import (SEED_LIMIT, AugmentKeys, AutoConfig, CheckpointConfig, Class2StrConfig, DatasetKeys, Method,
                                ObserveConfig, OptimizerKeys, PerformanceConfig, Phase1Config, RunConfig,
                                SchedulerKeys, Settings, SubclassConfig, TrainerSettings, YT8MKeys, register,
                                shortest_code_length, trainer_settings, typed, validate_config)
from sdnn.config.wording import composition_error, moved_hint, one_line, require

__all__ = ["SEED_LIMIT", "AugmentKeys", "AutoConfig", "CheckpointConfig", "Class2StrConfig", "DatasetKeys", "Method",
           "ObserveConfig", "OptimizerKeys", "PerformanceConfig", "Phase1Config", "RunConfig", "SchedulerKeys",
           "Settings", "SubclassConfig", "TrainerSettings", "YT8MKeys", "composition_error", "moved_hint",
           "one_line", "register", "require", "shortest_code_length", "trainer_settings", "typed",
           "validate_config"]
