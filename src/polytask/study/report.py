"""The study report: one self-contained HTML page and the same content as Markdown.

The page holds every figure as an inline PNG (a ``data:`` URI) and inline CSS, and no script,
so it opens offline and can be mailed as one file. The Markdown refers to the PNG files written
beside it in ``report_files/``. Content: learning curves (mean, error bars and every seed's
point), mean +/- std per arm and budget, the per-seed values, dev and test side by side, the
target's other metrics, cost per arm (train seconds, parameters, size on disk), each arm's gain
over the baseline with a paired t-test over seeds, per-task tables for multi-task arms,
training-loss and dev-metric curves over steps (seeds told apart), the task-affinity heatmap when
``polytask affinity`` has written one, the exact configs, and the library versions. Figures span
the page's width.
"""

from __future__ import annotations

import base64
import html
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from polytask import runs
from polytask.study import plots
from polytask.study.results import collect_rows, read_plan, write_results
from polytask.study.runner import STUDY_FILE
from polytask.study.stats import Summary, paired_test, summarize

FILES_DIR = "report_files"


@dataclass
class Block:
    """One piece of a section: a paragraph, a table, a figure or a code block."""

    kind: str  # "p" | "table" | "img" | "code"
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    path: Path | None = None  # figure file
    title: str = ""  # code block's summary line


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


def build_report(study_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.csv``/``results.jsonl``, ``report.html`` and ``report.md`` for a study.

    Works on a partly run study too: unfinished cells are listed, not scored.

    Args:
        study_dir: the study folder (with ``plan.json``).

    Returns:
        The paths of ``report.html`` and ``report.md``.
    """
    study_dir = Path(study_dir)
    plan = read_plan(study_dir)
    rows = collect_rows(study_dir)
    write_results(study_dir, rows)
    files = study_dir / FILES_DIR
    files.mkdir(exist_ok=True)
    for old in files.glob("*.png"):
        old.unlink()
    sections = _sections(study_dir, plan, rows, files)
    title = f"Study {plan['name']}"
    html_path, md_path = study_dir / "report.html", study_dir / "report.md"
    _atomic(html_path, render_html(title, sections))
    _atomic(md_path, render_markdown(title, sections, study_dir))
    return html_path, md_path


# ---- content ----------------------------------------------------------------------------------

def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def _sections(study_dir: Path, plan: dict[str, Any], rows: list[dict[str, Any]], files: Path) -> list[Section]:
    arms = [a["name"] for a in plan["arms"]]
    baseline = plan["baseline"]
    budgets = plan["budgets"]
    done_keys = {(r["target"], r["arm"], r["budget"], r["seed"]) for r in rows}
    cells = plan["cells"]
    missing = [c for c in cells if (c["target"], c["arm"], c["budget"], c["seed"]) not in done_keys]

    overview = Section("Overview")
    overview.blocks.append(Block("table", header=["", ""], rows=[
        ["targets", ", ".join(plan["targets"])],
        ["metric (split)", ", ".join(f"{t}: {plan['metric'][t]} ({plan['split'][t]})" for t in plan["targets"])],
        ["arms", ", ".join(arms)],
        ["baseline", baseline],
        ["budgets", ", ".join(budgets) + f" ({plan['budget_unit'].replace('_', ' ')})"],
        ["seeds", ", ".join(str(s) for s in plan["seeds"])],
        ["cells finished", f"{len(cells) - len(missing)} of {len(cells)}"],
        ["written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")],
    ]))
    descriptions = [[a["name"], a.get("description") or _arm_summary(a)] for a in plan["arms"]]
    overview.blocks.append(Block("table", header=["arm", "what it does"], rows=descriptions))
    if missing:
        listed = ", ".join(f"{c['target']}/{c['arm']}/{c['budget']}/seed{c['seed']}" for c in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        overview.blocks.append(Block("p", text=f"Not finished yet (run polytask compare again to continue): {listed}{more}."))
    sections = [overview]

    for target in plan["targets"]:
        metric, split = plan["metric"][target], plan["split"][target]
        n_train = {c["budget"]: c["n_train"] for c in cells if c["target"] == target}
        scores: dict[str, dict[str, dict[int, float]]] = {a: {b: {} for b in budgets} for a in arms}
        for r in rows:
            if r["primary"] and r["target"] == target:
                scores[r["arm"]][r["budget"]][r["seed"]] = r["value"]
        summ = {a: {b: summarize(list(scores[a][b].values())) for b in budgets} for a in arms}

        sec = Section(f"{target}: {metric} on {split}")
        curve = plots.learning_curve(
            files / f"learning_curve_{target}.png", target, metric, split,
            {a: [(n_train[b], summ[a][b]) for b in budgets] for a in arms}, baseline,
            seeds={a: [(n_train[b], list(scores[a][b].values())) for b in budgets] for a in arms},
        )
        sec.blocks.append(Block("img", path=curve, text=f"Learning curves of {target}"))
        sec.blocks.append(Block("p", text=f"Mean ± standard deviation of {metric} over seeds (n = seeds finished)."))
        header = ["arm"] + [f"{b} ({n_train[b]} labels)" for b in budgets]
        table = []
        for a in arms:
            table.append([a] + [
                "–" if summ[a][b].n == 0 else f"{_fmt(summ[a][b].mean)} ± {_fmt(summ[a][b].std)} (n={summ[a][b].n})"
                for b in budgets
            ])
        sec.blocks.append(Block("table", header=header, rows=table))
        sec.blocks.append(Block("p", text=f"Every seed's {metric} ({split}), in seed order."))
        sec.blocks.append(Block("table", header=["arm"] + budgets, rows=[
            [a] + [", ".join(f"s{seed}: {_fmt(v)}" for seed, v in sorted(scores[a][b].items())) or "–" for b in budgets]
            for a in arms
        ]))
        side = _dev_test_table(rows, target, metric, arms, budgets)
        if side is not None:
            sec.blocks.append(Block("p", text=f"{metric} on dev (best checkpoint) and test, side by side: mean ± std over seeds."))
            sec.blocks.append(side)
        secondary = _secondary_table(rows, target, metric, split, arms, budgets)
        if secondary is not None:
            sec.blocks.append(Block("p", text=f"Other metrics of {target} on {split}: mean ± std over seeds."))
            sec.blocks.append(secondary)
        sec.blocks.append(Block("p", text=(
            "Cost per arm: training seconds per cell (mean over the finished cells), parameters of "
            "the saved model, and its size on disk (checkpoints/best).")))
        sec.blocks.append(_cost_table(study_dir, plan, rows, target, arms))

        gains = []
        for a in arms:
            if a == baseline:
                continue
            for b in budgets:
                t = paired_test(scores[a][b], scores[baseline][b])
                gains.append([a, b, _fmt(t.mean_gain), _fmt(t.std_gain), f"{t.wins}/{t.n}",
                              _fmt(t.t, 3), t.note or _fmt_p(t.p)])
        if gains:
            sec.blocks.append(Block("p", text=(
                f"Gain over the baseline {baseline} ({metric}, arm − baseline), paired over seeds; "
                "p is the two-sided paired t-test (scipy.stats.ttest_rel); wins = seeds where the arm "
                "scored higher.")))
            sec.blocks.append(Block("table", header=["arm", "budget", "mean gain", "std", "wins", "t", "p"], rows=gains))
        sections.append(sec)

        mt = _multitask_section(plan, rows, target, arms, budgets)
        if mt is not None:
            sections.append(mt)

        losses = _step_runs(study_dir, plan, target, budgets, "train", "loss")
        if any(losses[b] for b in losses):
            loss_sec = Section(f"{target}: training loss")
            path = plots.loss_curves(files / f"loss_{target}.png", target, losses, arms)
            loss_sec.blocks.append(Block("img", path=path, text=f"Training loss of {target}"))
            sections.append(loss_sec)
        devs = _step_runs(study_dir, plan, target, budgets, "dev", f"{target}/{metric}")
        if any(devs[b] for b in devs):
            dev_sec = Section(f"{target}: dev {metric} over steps")
            path = plots.step_curves(files / f"dev_{target}.png", f"{target}: dev {metric} at each evaluation",
                                     f"{metric} (dev)", devs, arms)
            dev_sec.blocks.append(Block("img", path=path, text=f"Dev {metric} over steps of {target}"))
            sections.append(dev_sec)

    aff = _affinity_section(study_dir, files)
    if aff is not None:
        sections.append(aff)
    sections.extend(_transferability_sections(study_dir))
    sections.append(_configs_section(study_dir, plan))
    sections.append(_versions_section())
    return sections


def _arm_summary(arm: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in (arm.get("set") or {}).items()]
    if arm.get("init_from"):
        parts.append(f"init_from {arm['init_from']}")
    if arm.get("multitask_with"):
        parts.append("with tasks " + ", ".join(arm["multitask_with"]))
    return "; ".join(parts) or "the base experiment as it is"


def _multitask_section(plan: dict[str, Any], rows: list[dict[str, Any]], target: str, arms: list[str],
                       budgets: list[str]) -> Section | None:
    mt_arms = [a["name"] for a in plan["arms"] if a.get("multitask_with")]
    if not mt_arms:
        return None
    from polytask.tasks import TASKS

    sec = Section(f"{target}: every task of the multi-task arms")
    for arm in mt_arms:
        key = next((c for c in plan["cells"] if c["target"] == target and c["arm"] == arm), None)
        if key is None:
            continue
        cfg = plan["configs"][f"{target}/{arm}/{key['budget']}/seed{key['seed']}"]
        header = ["task", "metric (split)"] + budgets
        table = []
        for t in cfg["tasks"]:
            name = t["name"]
            metric = plan["metric"][target] if name == target else (t.get("metric") or _default_metric(TASKS, t["type"]))
            split = plan["split"][target] if name == target else "dev"
            cols = []
            for b in budgets:
                vals = [r["value"] for r in rows if r["target"] == target and r["arm"] == arm and r["budget"] == b
                        and r["task"] == name and r["metric"] == metric and r["split"] == split]
                s = summarize(vals)
                cols.append("–" if s.n == 0 else f"{_fmt(s.mean)} ± {_fmt(s.std)}")
            table.append([name, f"{metric} ({split})"] + cols)
        sec.blocks.append(Block("p", text=f"Arm {arm}: mean ± std over seeds; the extra tasks train on their full data."))
        sec.blocks.append(Block("table", header=header, rows=table))
    return sec


def _default_metric(tasks: Any, type_name: str) -> str:
    try:
        return tasks.get(type_name).default_metric
    except Exception:  # an import-path task that cannot load here: name it by loss
        return "loss"


def _mean_std(values: list[float]) -> str:
    st = summarize(values)
    return "–" if st.n == 0 else f"{_fmt(st.mean)} ± {_fmt(st.std)}"


def _values(rows: list[dict[str, Any]], **match: Any) -> list[float]:
    return [r["value"] for r in rows if all(r[k] == v for k, v in match.items())]


def _dev_test_table(rows: list[dict[str, Any]], target: str, metric: str, arms: list[str],
                    budgets: list[str]) -> Block | None:
    """Dev and test of the study's metric side by side (None when no cell has a test score)."""
    if not any(r["target"] == target and r["task"] == target and r["split"] == "test" for r in rows):
        return None
    table = []
    for a in arms:
        for b in budgets:
            common = {"target": target, "task": target, "metric": metric, "arm": a, "budget": b}
            table.append([a, b, _mean_std(_values(rows, split="dev", **common)),
                          _mean_std(_values(rows, split="test", **common))])
    return Block("table", header=["arm", "budget", f"{metric} (dev)", f"{metric} (test)"], rows=table)


def _secondary_table(rows: list[dict[str, Any]], target: str, metric: str, split: str, arms: list[str],
                     budgets: list[str]) -> Block | None:
    """The target's other metrics (macro-F1, MCC, loss, ...) on the study's split."""
    others = sorted({r["metric"] for r in rows if r["target"] == target and r["task"] == target
                     and r["split"] == split and r["metric"] != metric})
    if not others:
        return None
    table = []
    for m in others:
        for a in arms:
            table.append([m, a] + [_mean_std(_values(rows, target=target, task=target, split=split, metric=m,
                                                     arm=a, budget=b)) for b in budgets])
    return Block("table", header=["metric", "arm"] + budgets, rows=table)


def _model_size(run_dir: Path) -> tuple[int | None, int | None]:
    """(parameters, bytes) of a run's best (else last) saved model; None where absent."""
    from polytask.training import checkpoint as ckpt

    for name in ("best", "last"):
        cdir = ckpt.resolve_dir(run_dir / "checkpoints" / name)
        if cdir is None:
            continue
        weights = cdir / ckpt.MODEL_FILE
        size = sum(p.stat().st_size for p in cdir.rglob("*") if p.is_file() and not p.name.startswith(("optimizer", "rng")))
        params = None
        if weights.is_file():
            from safetensors import safe_open

            with safe_open(str(weights), framework="np") as fh:
                params = sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())  # noqa: SIM118
        return params, size
    return None, None


def _cost_table(study_dir: Path, plan: dict[str, Any], rows: list[dict[str, Any]], target: str,
                arms: list[str]) -> Block:
    table = []
    for a in arms:
        seconds = {(r["budget"], r["seed"]): r["seconds"] for r in rows if r["target"] == target and r["arm"] == a}
        first = next((c for c in plan["cells"] if c["target"] == target and c["arm"] == a
                      and (study_dir / c["run_dir"]).is_dir()), None)
        params, size = _model_size(study_dir / first["run_dir"]) if first else (None, None)
        st = summarize([float(v) for v in seconds.values() if isinstance(v, (int, float))])
        table.append([
            a,
            "–" if st.n == 0 else f"{st.mean:.1f} (n={st.n})",
            "n/a" if params is None else f"{params / 1e6:.2f} M",
            "n/a" if size is None else f"{size / 1e6:.1f} MB",
        ])
    return Block("table", header=["arm", "train seconds per cell", "parameters", "size on disk"], rows=table)


def _step_runs(study_dir: Path, plan: dict[str, Any], target: str, budgets: list[str], split: str,
               key: str) -> dict[str, dict[str, list[tuple[int, list[int], list[float]]]]]:
    """budget -> arm -> [(seed, steps, values)] of ``key`` in the ``split`` records of each
    finished cell's ``metrics.jsonl`` (``train``/``loss``, ``dev``/``sent/accuracy``)."""
    out: dict[str, dict[str, list[tuple[int, list[int], list[float]]]]] = {b: {} for b in budgets}
    for c in plan["cells"]:
        if c["target"] != target:
            continue
        path = study_dir / c["run_dir"] / runs.METRICS_FILE
        if not path.is_file():
            continue
        steps, values = [], []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("split") == split and isinstance(rec.get(key), (int, float)):
                steps.append(int(rec["step"]))
                values.append(float(rec[key]))
        if steps:
            out[c["budget"]].setdefault(c["arm"], []).append((c["seed"], steps, values))
    return out


def _affinity_section(study_dir: Path, files: Path) -> Section | None:
    data_path, png_path = study_dir / "affinity.json", study_dir / "affinity.png"
    sec = Section("Task affinity")
    if data_path.is_file():
        data = json.loads(data_path.read_text(encoding="utf-8"))
        path = plots.affinity_heatmap(files / "affinity.png", data["tasks"], data["matrix"])
        sec.blocks.append(Block("p", text="Measured by polytask affinity (affinity.json in the study folder)."))
        sec.blocks.append(Block("img", path=path, text="Task affinity heatmap"))
        return sec
    if png_path.is_file():
        sec.blocks.append(Block("img", path=png_path, text="Task affinity heatmap"))
        return sec
    return None


def _transferability_sections(study_dir: Path) -> list[Section]:
    """The estimates ``polytask transferability --study`` wrote, one table per target task."""
    path = study_dir / "transferability.json"
    if not path.is_file():
        return []
    out = []
    for name, result in json.loads(path.read_text(encoding="utf-8")).items():
        estimates = result["estimates"]
        sec = Section(f"Transferability estimates: {name}")
        sec.blocks.append(Block("p", text=(
            f"Computed before training by polytask transferability on {result['examples']} training examples of "
            f"task {result['task']} ({result['task_type']}), ranked by {result['rank_by']} (higher is better for "
            "every estimate). Compare the order with the measured tables above: the estimates are a guess "
            "from frozen features, not a result.")))
        rows = []
        for rank, src in enumerate(result["sources"], 1):
            values = [src["estimates"].get(e, {}).get("value") for e in estimates]
            rows.append([str(rank), src["source"], *("-" if v is None else f"{v:.4g}" for v in values),
                         f"{src['feature_seconds']:.1f}"])
        sec.blocks.append(Block("table", header=["rank", "source", *estimates, "features s"], rows=rows))
        out.append(sec)
    return out


def _configs_section(study_dir: Path, plan: dict[str, Any]) -> Section:
    sec = Section("Configs")
    study_file = study_dir / STUDY_FILE
    if study_file.is_file():
        sec.blocks.append(Block("code", title="study (resolved)", text=study_file.read_text(encoding="utf-8")))
    sec.blocks.append(Block("p", text=(
        "Each arm's resolved experiment, as trained in its first cell; the other cells differ only "
        "in train.seed, the target's data.train sample, name and output_dir.")))
    seen = set()
    for c in plan["cells"]:
        key = (c["target"], c["arm"])
        if key in seen:
            continue
        seen.add(key)
        cfg = plan["configs"][f"{c['target']}/{c['arm']}/{c['budget']}/seed{c['seed']}"]
        sec.blocks.append(Block("code", title=f"{c['target']} / {c['arm']}",
                                text=yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)))
    for name in plan.get("sources", {}):
        cfg = plan["configs"].get(f"source:{name}")
        if cfg is not None:
            sec.blocks.append(Block("code", title=f"source {name}", text=yaml.safe_dump(cfg, sort_keys=False)))
    return sec


def versions() -> dict[str, str]:
    """Python, platform and library versions (what produced the report)."""
    from polytask.training.checkpoint import versions as lib_versions

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    out.update(lib_versions())
    for mod in ("accelerate", "numpy", "scipy", "sklearn", "matplotlib"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            continue
    return out


def _versions_section() -> Section:
    sec = Section("Versions")
    sec.blocks.append(Block("table", header=["package", "version"], rows=[[k, v] for k, v in versions().items()]))
    return sec


# ---- rendering ----------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 96rem;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 0; }
img { width: 100%; height: auto; border: 1px solid #eee; margin: .5rem 0; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; }
details { margin: .4rem 0; }
summary { cursor: pointer; font-weight: 600; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(title: str, sections: list[Section]) -> str:
    """The report as one self-contained HTML page (no script, no external resource)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(title)}</title><style>{CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for sec in sections:
        out.append(f"<h{sec.level}>{e(sec.title)}</h{sec.level}>")
        for b in sec.blocks:
            if b.kind == "p":
                out.append(f"<p>{e(b.text)}</p>")
            elif b.kind == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in b.header) if any(b.header) else ""
                body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
                out.append(f"<table>{'<thead><tr>' + head + '</tr></thead>' if head else ''}<tbody>{body}</tbody></table>")
            elif b.kind == "img" and b.path is not None:
                out.append(f'<figure><img class="plot" src="{_data_uri(b.path)}" alt="{e(b.text)}"></figure>')
            elif b.kind == "code":
                out.append(f"<details><summary>{e(b.title)}</summary><pre>{e(b.text)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_markdown(title: str, sections: list[Section], study_dir: Path) -> str:
    """The report as Markdown; figures are the PNG files in ``report_files/``."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = [f"# {title}", ""]
    for sec in sections:
        out += ["#" * sec.level + f" {sec.title}", ""]
        for b in sec.blocks:
            if b.kind == "p":
                out += [b.text, ""]
            elif b.kind == "table":
                header = b.header if any(b.header) else ["", ""]
                out.append("| " + " | ".join(cell(h) for h in header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in b.rows]
                out.append("")
            elif b.kind == "img" and b.path is not None:
                rel = b.path.relative_to(study_dir) if b.path.is_relative_to(study_dir) else b.path
                out += [f"![{b.text}]({rel.as_posix()})", ""]
            elif b.kind == "code":
                out += [f"**{b.title}**", "", "```yaml", b.text.rstrip(), "```", ""]
    return "\n".join(out)


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


__all__ = ["Summary", "build_report", "render_html", "render_markdown", "versions"]
