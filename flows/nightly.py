"""Flow `nightly`: ingest, train, promote, compress the store, as one run of four sub-flows.

The candidate the gate judges is the version the train sub-flow registered; the store is compressed
with whatever is `@champion` after the gate (the new model if it won, the previous one if not; the
new version itself while no version has passed the gate yet)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.bulk import BulkParams, bulk_compress
from flows.common import report
from flows.ingest import IngestParams, ingest
from flows.promote import PromoteParams, promote
from flows.train import TrainParams, train


class NightlyParams(BaseModel):
    """The parameters of each sub-flow."""

    model_config = ConfigDict(extra="forbid")
    ingest: IngestParams = Field(IngestParams(), description="New images to shard into the dataset.")
    train: TrainParams = Field(TrainParams(), description="The training run (params.yaml values where unset).")
    promote: PromoteParams = Field(PromoteParams(), description="The gate (its candidate is the version just trained).")
    compress: BulkParams = Field(BulkParams(), description="The store to compress with the @champion model.")


@flow(name="nightly", log_prints=True)
def nightly(params: NightlyParams = NightlyParams()) -> dict[str, Any]:
    """Ingest new images, retrain, promote the new model if it wins the gate, compress the store."""
    data = ingest(params.ingest)
    trained = train(params.train.model_copy(update={"register_model": True}))
    reg = trained["registered"]
    decision = promote(params.promote.model_copy(update={"name": reg["name"], "version": reg["version"]}))
    compress = params.compress
    if compress.model is None:  # the champion; before there is one, the version just trained
        champion = decision["aliases_after"].get("champion")
        model = f"models:/{reg['name']}@champion" if champion else f"models:/{reg['name']}/{reg['version']}"
        compress = compress.model_copy(update={"model": model})
    compressed = bulk_compress(compress)
    test = trained["eval"].get("texpress", {})
    rows = {"data version": data["dataset_version"][:16], "images accepted": data["accepted"],
            "trained version": f"{reg['name']} {reg['version']}", "test bpp": test.get("bpp"),
            "test PSNR (dB)": test.get("psnr-rgb"), "promoted": decision["promoted"],
            "@champion": decision["aliases_after"].get("champion"), "store model": compress.model,
            "store images coded": compressed["done"], "store failures": compressed["failed"],
            "store mean bpp": compressed["mean_bpp"]}
    report("nightly", "Nightly: ingest, train, promote, compress", rows)
    return {"ingest": data, "train": trained, "promote": decision, "compress": compressed}
