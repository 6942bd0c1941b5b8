"""Hyper-parameter search over an experiment: Optuna trials, each one polytask training run.

The sampler is TPE (Bergstra et al. 2011, "Algorithms for Hyper-Parameter Optimization", NeurIPS;
Akiba et al. 2019, "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD) and
poor trials are pruned by the median rule on their dev evaluations (Golovin et al. 2017, "Google
Vizier"): a trial whose dev score at a step is below the median of earlier trials' at that step
stops there. Trials live in an SQLite study (``<dir>/study.db``), so a killed search resumes
where it stopped; the objective is the run's selection metric (``train.metric``; ``average``
over the tasks of a multi-task run), whatever the strategy.

The search space is a YAML mapping from override paths (as ``--set`` takes them) to ranges::

    train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    train.batch_size: {type: categorical, choices: [8, 16, 32]}
    train.epochs: {type: int, low: 1, high: 4}
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polytask.callbacks.base import Callback
from polytask.config.loader import dump_config, load_config, read_yaml_mapping
from polytask.errors import ConfigError, PolytaskError

SPACE_TYPES = ("float", "int", "categorical")
STUDY_FILE = "study.db"
BEST_CONFIG = "best_config.yaml"
REPORT = "report.html"


@dataclass
class Param:
    """One searched value: an override path and its range."""

    path: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def suggest(self, trial: Any) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.path, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), step=self.step, log=self.log)


def read_space(path: str | Path) -> list[Param]:
    """The search space of a YAML file; ConfigError naming the file and key for a bad entry."""
    path = Path(path)
    raw = read_yaml_mapping(path, "search space file")
    if not raw:
        raise ConfigError("the search space is empty; give at least one key (e.g. train.lr)", source=str(path))
    out = []
    for key, spec in raw.items():
        where = f"search space key {key!r}"
        if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
            raise ConfigError(
                f"{where}: give a mapping with type: {' | '.join(SPACE_TYPES)} "
                "(e.g. {type: float, low: 1.0e-5, high: 1.0e-3, log: true})",
                source=str(path),
            )
        unknown = sorted(set(spec) - {"type", "low", "high", "log", "step", "choices"})
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: type, low, high, log, step, choices", source=str(path))
        kind = spec["type"]
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}: a categorical range needs a non-empty choices list", source=str(path))
            out.append(Param(str(key), kind, choices=choices))
            continue
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise ConfigError(f"{where}: a {kind} range needs numbers low < high (got low={low!r}, high={high!r})", source=str(path))
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise ConfigError(f"{where}: log: true needs low > 0 (got {low})", source=str(path))
        out.append(Param(str(key), kind, float(low), float(high), log, spec.get("step")))
    return out


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise PolytaskError("polytask tune needs optuna, which is not installed: pip install 'polytask[tune]'") from None
    return optuna


class PruningCallback(Callback):
    """Reports each dev evaluation's selection metric to an Optuna trial; asks the run to stop when
    the pruner says the trial is worse than the median at that step.

    Args:
        trial: the Optuna trial.
        metric: the key of the objective in the evaluation's metrics (``sent/accuracy``, ``average``).
    """

    def __init__(self, trial: Any, metric: str | None):
        self.trial = trial
        self.metric = metric
        self.pruned = False

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> bool | None:
        value = metrics.get(self.metric) if self.metric else None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            self.pruned = True
            return True
        return None


def selection_metric(cfg: Any) -> str:
    """The metric training selects checkpoints by (as the training loop names it)."""
    from polytask.tasks import TASKS

    name = cfg.train.metric
    if name is None:
        if len(cfg.tasks) > 1:
            return "average"
        t = cfg.tasks[0]
        return f"{t.name}/{t.metric or TASKS.get(t.type, field=f'tasks.{t.name}.type').default_metric}"
    if name != "average" and "/" not in name and len(cfg.tasks) == 1:
        return f"{cfg.tasks[0].name}/{name}"
    return name


def minimises(metric: str | None) -> bool:
    """Losses and errors are minimised; scores maximised (as the training loop selects them)."""
    return bool(metric) and metric.rpartition("/")[2] in ("loss", "mse", "mae")


@dataclass
class TuneResult:
    """Attributes: study directory, best trial number, value and params, the best config file,
    the report page, and counts of trials by state."""

    directory: Path
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None
    report: Path
    states: dict[str, int]


def _train(cfg: Any, out: Path, callbacks: list[Callback]) -> Any:
    from polytask.training.loop import train

    return train(cfg, output_dir=out, overwrite=True, callbacks=callbacks)


def tune(
    experiment: str | Path,
    space: str | Path,
    trials: int,
    directory: str | Path | None = None,
    overrides: list[str] | None = None,
    seed: int = 0,
    direction: str | None = None,
    startup_trials: int = 2,
) -> TuneResult:
    """Search ``space`` for the experiment's best selection metric over ``trials`` trials in all.

    Args:
        experiment: the YAML experiment file.
        space: the YAML search space (see the module docstring).
        trials: total trials of the study (finished and pruned ones count; a resumed study runs
            only the rest).
        directory: the study folder (default ``runs/<name>-tune``): ``study.db``, ``trials/``,
            ``best_config.yaml``, ``report.html``.
        overrides: ``key=value`` applied to every trial before the searched values.
        seed: the TPE sampler's seed.
        direction: ``maximize`` or ``minimize`` (default: from the selection metric's name).
        startup_trials: trials before pruning and TPE start (random sampling until then).
    """
    if trials < 1:
        raise ConfigError(f"--trials must be 1 or more, got {trials}", field="trials")
    params = read_space(space)
    base = load_config(experiment, overrides or [])  # fails now on a bad experiment file
    for p in params:  # every searched key must be one the config accepts
        probe = p.choices[0] if p.type == "categorical" else (p.low if p.type == "float" else int(p.low))
        load_config(experiment, [*(overrides or []), f"{p.path}={json.dumps(probe)}"])
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(directory) if directory is not None else Path("runs") / f"{base.name}-tune"
    out.mkdir(parents=True, exist_ok=True)
    metric = selection_metric(base)
    direction = direction or ("minimize" if minimises(metric) else "maximize")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be maximize or minimize, got {direction!r}", field="direction")
    study = optuna.create_study(
        study_name=base.name,
        storage=f"sqlite:///{(out / STUDY_FILE).resolve()}",
        load_if_exists=True,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0),
    )
    states = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        # A trial left RUNNING by a killed search never finishes; mark it failed and run another.
        study._storage.set_trial_state_values(t._trial_id, states.FAIL)
    done = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))

    def objective(trial: Any) -> float:
        values = {p.path: p.suggest(trial) for p in params}
        sets = [*(overrides or []), *(f"{k}={json.dumps(v)}" for k, v in values.items())]
        cfg = load_config(experiment, sets)
        trial.set_user_attr("overrides", sets)
        pruning = PruningCallback(trial, metric)
        result = _train(cfg, out / "trials" / f"trial-{trial.number:04d}", [pruning])
        trial.set_user_attr("run_dir", str(result.run_dir))
        trial.set_user_attr("metric", result.metric)
        trial.set_user_attr("seconds", float(result.seconds))
        if pruning.pruned:
            raise optuna.TrialPruned()
        if result.best_metric is None:
            raise PolytaskError(f"trial {trial.number}: the run made no dev evaluation to score")
        return float(result.best_metric)

    remaining = max(0, trials - done)
    if remaining:
        study.optimize(objective, n_trials=remaining, catch=())
    return _finish(study, experiment, overrides or [], out, optuna)


def _finish(study: Any, experiment: str | Path, overrides: list[str], out: Path, optuna: Any) -> TuneResult:
    """Write the best config and the report page; summarise the study."""
    all_trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in all_trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    complete = [t for t in all_trials if t.state == optuna.trial.TrialState.COMPLETE]
    best_cfg_path = None
    best = study.best_trial if complete else None
    if best is not None:
        cfg = load_config(experiment, list(best.user_attrs.get("overrides", overrides)))
        cfg.output_dir = None
        best_cfg_path = out / BEST_CONFIG
        header = (f"# best of {len(complete)} finished trials (trial {best.number}): "
                  f"{best.user_attrs.get('metric', 'objective')} = {best.value:.4f}\n"
                  f"# searched: {json.dumps(best.params)}\n")
        best_cfg_path.write_text(header + dump_config(cfg), encoding="utf-8")
    report = out / REPORT
    report.write_text(report_html(study, optuna), encoding="utf-8")
    return TuneResult(out, best.number if best else None, best.value if best else None,
                      dict(best.params) if best else {}, best_cfg_path, report, counts)


# ---- the report page ----------------------------------------------------------------------------
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _parallel_plot(trials: list[Any], names: list[str], maximize: bool) -> str | None:
    """Parallel coordinates: one line per finished trial across the searched values (each axis
    scaled to its range; log axes in log space), coloured by the objective."""
    if not trials or not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = []
    for n in names:
        vals = [t.params.get(n) for t in trials]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            x = [float(v) for v in vals]
            if min(x) > 0 and max(x) / min(x) > 20:
                x = [math.log10(v) for v in x]
        else:
            levels = sorted({json.dumps(v) for v in vals})
            x = [float(levels.index(json.dumps(v))) for v in vals]
        lo, hi = min(x), max(x)
        cols.append([(v - lo) / (hi - lo) if hi > lo else 0.5 for v in x])
    values = [t.value for t in trials]
    vmin, vmax = min(values), max(values)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    cmap = plt.get_cmap("viridis" if maximize else "viridis_r")
    for i, t in enumerate(trials):
        shade = (t.value - vmin) / (vmax - vmin) if vmax > vmin else 1.0
        ax.plot(range(len(names) + 1), [c[i] for c in cols] + [shade], color=cmap(shade), alpha=0.85, lw=2)
    ax.set_xticks(range(len(names) + 1), [*names, "objective"])
    ax.set_yticks([0, 1], ["low", "high"])
    ax.set_title("finished trials: searched values (scaled per axis) and objective")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    fig.colorbar(sm, ax=ax, label="objective")
    src = _png(fig)
    plt.close(fig)
    return src


def report_html(study: Any, optuna: Any) -> str:
    """One self-contained page: the best trial, a parallel-coordinates plot, parameter
    importances (Optuna's default evaluator, when two or more trials finished) and a table of every trial."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    names = sorted({k for t in trials for k in t.params})
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>polytask tune</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{width:100%}"
        "</style></head><body>",
        f"<h1>Study {html.escape(study.study_name)}</h1>",
        f"<p>{len(trials)} trials ({len(complete)} finished); direction: {'maximize' if maximize else 'minimize'}.</p>",
    ]
    if complete:
        b = study.best_trial
        parts.append(f"<p><b>Best: trial {b.number}</b>, {html.escape(str(b.user_attrs.get('metric', 'objective')))} "
                     f"= {b.value:.4f}; {html.escape(json.dumps(b.params))}</p>")
    plot = _parallel_plot(complete, names, maximize)
    if plot:
        parts.append(f"<h2>Parallel coordinates</h2><img alt='parallel coordinates' src='{plot}'>")
    if len(complete) >= 2 and names:
        try:
            import warnings

            with warnings.catch_warnings():  # "importances will be equal" on tiny studies: shown as such
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study)
        except Exception as exc:  # noqa: BLE001 - importance needs varied trials; say why it is absent
            parts.append(f"<p>Parameter importance not available: {html.escape(str(exc))}</p>")
        else:
            rows = "".join(f"<tr><td style='text-align:left'>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in imp.items())
            parts.append(f"<h2>Parameter importance (Optuna's default evaluator)</h2><table><tr><th>parameter</th><th>importance</th></tr>{rows}</table>")
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    parts.append(f"<h2>Trials</h2><table><tr><th>trial</th><th>state</th><th>objective</th>{head}<th>seconds</th><th>last step</th></tr>")
    for t in trials:
        value = f"{t.value:.4f}" if t.value is not None else "–"
        cells = "".join(f"<td>{html.escape(json.dumps(t.params.get(n)))}</td>" for n in names)
        seconds = t.user_attrs.get("seconds")
        secs = f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "–"
        last = max(t.intermediate_values) if t.intermediate_values else "–"
        parts.append(f"<tr><td>{t.number}</td><td>{t.state.name.lower()}</td><td>{value}</td>{cells}"
                     f"<td>{secs}</td><td>{last}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
