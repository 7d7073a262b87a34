"""``flexdiff inspect``: the model's branches with their partial-step MACs."""

from __future__ import annotations

import json

import typer

from flexdiff.cli._app import DEVICE, FRAMES, HEIGHT, MODEL, PIPELINE_KWARGS, WIDTH, call_options, command


@command
def inspect(
    model: str = MODEL,
    device: str = DEVICE,
    as_json: bool = typer.Option(False, "--json"),
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    frames: int | None = FRAMES,
    pipeline_kwargs: str | None = PIPELINE_KWARGS,
) -> None:
    """Print the model's skip branches with their partial-step MACs and share of a full step."""
    from rich.table import Table

    from flexdiff.models import load_model
    from flexdiff.running.cost import measure_macs
    from flexdiff.utils.progress import stdout

    m = load_model(model, device, call_options=call_options(height, width, frames, pipeline_kwargs))
    layout = m.layout
    costs = measure_macs(m)
    info = {
        "model": model,
        "class": type(m.denoiser).__name__,
        "backbone": m.backbone.name,
        "sample_shape": list(m.sample_shape),
        "parameters": m.num_parameters,
        "decoder": type(getattr(m.decoder, "vae", m.decoder)).__name__ if m.decoder is not None else None,  # latent pipelines
        "text_encoder": m.prompt_encoder is not None,
        "full_step_macs": costs.full,
        "branches": [
            {"branch": b.index, "skip": b.label, "partial_macs": costs.partial[b.index], "share_of_full": round(costs.partial[b.index] / costs.full, 4)}
            for b in layout.branches
        ],
    }
    if as_json:
        print(json.dumps(info))
        return
    latent = f" (latents; decoder {info['decoder']})" if m.decoder is not None else ""
    stdout.print(
        f"{model}: {info['class']} {tuple(m.sample_shape)}{latent}, {m.num_parameters:,} parameters, full step {costs.full / 1e6:.2f} MMACs per sample"
    )
    what = "skip connection" if m.backbone.reuse == "output" else "computed blocks (first F, last B)"
    table = Table("branch", what, "partial MMACs", "share of full")
    for row in info["branches"]:
        table.add_row(str(row["branch"]), row["skip"], f"{row['partial_macs'] / 1e6:.3f}", f"{row['share_of_full']:.1%}")
    stdout.print(table)
