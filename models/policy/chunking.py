"""What every downstream policy config shares: how action chunks are predicted and executed, and the checks on it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ChunkedPolicyConfig(BaseModel):
    """Base of PolicyConfig and Pi0BaselineConfig (both stored as config.json beside their checkpoints)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = Field("custom", description="name of the preset this config came from")
    chunk: int = Field(16, ge=1, description="actions predicted per call")
    execute: int = Field(8, ge=1, description="actions of a chunk executed before the policy is asked again")
    num_steps: int = Field(10, ge=1, description="Euler steps of the action flow at inference")
    seed: int = Field(0, description="seed of the random initialisation")
    heads: int = Field(ge=1, description="query heads (each config sets its default)")
    kv_heads: int = Field(ge=1, description="key/value heads: heads must be a multiple of them")

    @model_validator(mode="after")
    def _check_chunking(self):
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must be a multiple of kv_heads {self.kv_heads}")
        if self.execute > self.chunk:
            raise ValueError(f"execute {self.execute} exceeds chunk {self.chunk}")
        return self
