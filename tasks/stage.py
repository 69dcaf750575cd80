"""The one contract every extraction stage keeps (docs/architecture.md#stage-contract).

A stage reads its own slice of the `IngestConfig` (`settings`), may check a source before anything
is decoded (`precheck`: cheap refusals such as "a plain video has no given depth"), loads its
models once per worker (`warm`), says what a worker must reserve for it (`resources`) and whether
it runs a model (`uses_model`), and turns an `Episode` into a fuller one (`run`). Runners derive
warm-up, GPU needs and model actor pools from the list of stages, so a new backend declares its
needs where it is implemented, not in the runners.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from tasks.config import IngestConfig
from tasks.types import Episode, EpisodeSource

Settings = TypeVar("Settings")


@dataclass(frozen=True)
class Resources:
    """What a worker reserves for a stage (Ray `num_cpus` / `num_gpus`; fractions allowed): an episode's task,
    or, for a stage that `uses_model`, each actor of its model pool on Ray (tasks/run/model_pools.py)."""

    cpus: float = 1.0
    gpus: float = 0.0


class Stage(ABC, Generic[Settings]):
    """Base of every stage; subclasses set `name` and implement `settings` and `run`."""

    name: ClassVar[str]

    @abstractmethod
    def settings(self, cfg: IngestConfig) -> Settings:
        """The part of the ingest config this stage reads (typed, so its signature says what it uses)."""

    def precheck(self, src: EpisodeSource, settings: Settings) -> None:
        """Refuse a source before decoding when the settings cannot work on it (raise ConfigurationError)."""

    def warm(self, settings: Settings) -> None:
        """Load this stage's models into the process caches (once per worker, before a run's clock)."""

    def resources(self, settings: Settings) -> Resources:
        return Resources()

    @classmethod
    def gpu_setting(cls) -> str:
        """The `--set` key of the GPUs `resources` reserves, for refusals that tell the user what to change."""
        return f"{cls.name}.gpus"

    def uses_model(self, settings: Settings) -> bool:
        """Whether `run` needs a loaded model: the Ray runner then runs it on that model's actor pool."""
        return False

    @abstractmethod
    def run(self, ep: Episode, settings: Settings) -> Episode:
        """The episode with this stage's fields filled (a new Episode; the input is not changed)."""


def resources_of(stages: list[Stage], cfg: IngestConfig) -> Resources:
    """What an episode's task reserves: the most any one stage needs (stages run one after another)."""
    needs = [s.resources(s.settings(cfg)) for s in stages]
    return Resources(cpus=max(r.cpus for r in needs), gpus=max(r.gpus for r in needs))


def warm_all(stages: list[Stage], cfg: IngestConfig) -> None:
    """Load every stage's models once; a model that cannot load is left for `run` to report per episode, as data."""
    for stage in stages:
        try:
            stage.warm(stage.settings(cfg))
        except Exception:  # noqa: BLE001 - the same error reaches each episode's row through run
            pass
