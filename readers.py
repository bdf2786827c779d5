"""Readers of results/<version>/: the JSON, metrics and tables that the analyses and experiments
wrote, one home for claims.py and make_paper_figures.py (no computation beyond picking numbers and
the nulls that geometry.py computes from what a file holds).

    res = Results("results")        # the newest corpus version with a seed run
    s = Seed(res, 42)               # one seed run's analyses, metrics, optimizer null, twin
    get(s.pca, "summary.block0.pc1"); group_key(s.pca, "block0", "coherence")
"""
from __future__ import annotations

import glob
import json
import math
import os
import re

import numpy as np

import geometry as geo
from config import fail
from runs import load_record

BLOCKS = [f"block{i}" for i in range(8)]
PCA_JSON = "analysis/trajectory_pca_uncentered.json"
UPDATE_JSON = "analysis/backbone_update_analysis.json"
GRAD_JSON = "analysis/backbone_gradient_analysis.json"
FISHER_JSON = "analysis/backbone_fisher_analysis.json"
NULL_JSON = "analysis/optimizer_null.json"
MECHANICS_JSON = "nulls/mechanics.json"   # optimizer_null.py --mechanics: one ingredient at a time
ROBUST_JSON = "claims_robust.json"        # claims.py --robust: each claim under each definition
TWIN = "{run}_wd0"        # the no-decay twin's run folder beside the run (experiments.twin_config)


def matched_null_pc1(norms_sq) -> float:
    """The matched null of increments with these squared norms (geometry.matched_null_pc1)."""
    return geo.matched_null_pc1([float(x) for x in norms_sq])


class Results:
    """Read-only view of results/<version>/: JSON by relative path (None when missing or
    unreadable)."""

    def __init__(self, root: str = "results", version: str | None = None):
        self.root = root
        self.version = version or newest_version(root)
        self.dir = os.path.join(root, self.version) if self.version else None
        self._cache: dict[str, object] = {}

    def path(self, rel: str) -> str:
        return os.path.join(self.dir or self.root, rel)

    def json(self, rel: str):
        # cached, misses included: the claims and figures read the same files many times over
        if rel not in self._cache:
            try:
                with open(self.path(rel)) as f:
                    self._cache[rel] = json.load(f)
            except (OSError, ValueError):
                self._cache[rel] = None
        return self._cache[rel]

    def metrics(self, rel: str) -> list[dict]:
        try:
            with open(self.path(rel)) as f:
                return [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError):
            return []

    def seeds(self) -> list[int]:
        if not self.dir:
            return []
        # seed<N> only: the twins (seed<N>_wd0) and experiment folders are not seed runs
        found = [int(m.group(1)) for d in os.listdir(self.dir)
                 if (m := re.fullmatch(r"seed(\d+)", d))]
        return sorted(found)

    def corpus_stats(self) -> dict | None:
        """Corpus statistics (n-gram baselines) of this version: results/<version>/corpus/, else
        results/corpus/.
        """
        here = glob.glob(self.path("corpus/*.json"))
        shared = glob.glob(os.path.join(self.root, "corpus", "*.json"))
        for f in sorted(here + shared):
            try:
                d = json.load(open(f))
            except (OSError, ValueError):
                continue
            d = d.get("results", d) if isinstance(d, dict) else d  # the results writer's envelope
            # the baselines belong to one corpus version: a file of another version's corpus
            # would compare the losses with the wrong text
            if "ngram_val_nats" in d and (
                self.version is None
                or f" {self.version} " in f" {d.get('corpus', '')} "
                or f"_{self.version}_" in d.get("corpus", "")
                or "/" + self.version + "/" in f
            ):
                return d
        return None


def newest_version(root: str) -> str | None:
    """The highest results/v<N> holding a seed run with its PCA analysis (else the highest
    v<N>)."""
    vs = sorted(
        (int(m.group(1)), d)
        for d in (os.listdir(root) if os.path.isdir(root) else [])
        if (m := re.fullmatch(r"v(\d+)", d))
    )  # sorted by the number: v10 after v9
    full = [d for _, d in vs if glob.glob(os.path.join(root, d, "seed*", PCA_JSON))]
    return (full or [d for _, d in vs] or [None])[-1]


def get(d, path: str, default=None):
    """d at the dotted `path` (list indices as numbers); else the same under d['results'] (SPEC-5
    wrapper)."""
    for p in (path, "results." + path):
        cur, ok = d, True
        for k in p.split("."):
            if isinstance(cur, dict) and k in cur:
                cur = cur[k]
            elif (isinstance(cur, list) and k.lstrip("-").isdigit()
                  and -len(cur) <= int(k) < len(cur)):
                cur = cur[int(k)]
            else:
                ok = False
                break
        if ok and cur is not None:
            return cur
    return default


def find(d, key: str, depth: int = 3):
    """The first value of `key` in d, searched breadth-first down to `depth` levels (None when
    absent)."""
    level = [d]
    for _ in range(depth + 1):
        nxt = []
        for x in level:
            if isinstance(x, dict):
                if x.get(key) is not None:
                    return x[key]
                nxt += [v for v in x.values() if isinstance(v, dict)]
        level = nxt
    return None


def group_entries(doc, group: str) -> list:
    """Where an analysis keeps one group's numbers (old and new layouts)."""
    return [
        e
        for e in (
            get(doc, f"summary.{group}"),
            get(doc, f"results.{group}"),
            get(doc, f"groups.{group}"),
            get(doc, f"results.results.{group}"),
        )
        if isinstance(e, dict)
    ]


def group_key(doc, group: str, key: str):
    for e in group_entries(doc, group):
        v = find(e, key)
        if v is not None:
            return v
    return None


def corr(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    # two points always correlate at +-1 and a constant has none: no number rather than a
    # meaningless one
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return None
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


class Seed:
    """The numbers of one seed run (results/<version>/seed<N>/), with the nulls computed where
    absent."""

    def __init__(self, res: Results, seed: int, name: str | None = None):
        self.res, self.seed = res, seed
        self.dir = name or getattr(res, "names", {}).get(seed) or f"seed{seed}"
        self.pca = res.json(f"{self.dir}/{PCA_JSON}")
        self.update = res.json(f"{self.dir}/{UPDATE_JSON}")
        self.grad = res.json(f"{self.dir}/{GRAD_JSON}")
        self.fisher = res.json(f"{self.dir}/{FISHER_JSON}")
        self.null = res.json(f"{self.dir}/{NULL_JSON}")
        self.metrics = res.metrics(f"{self.dir}/metrics.jsonl")

    def twin(self) -> "Seed | None":
        """The no-decay twin of this seed (results/<version>/seed<N>_wd0/) when it has its PCA
        analysis."""
        if self.dir.endswith("_wd0"):
            return None
        t = Seed(self.res, self.seed, self.dir + "_wd0")
        return t if t.pca is not None else None

    def opt(self, group: str, stat: str) -> dict | None:
        """The optimizer null's {mean, sd, min, max, n} of `stat` in `group` (None without the
        null)."""
        return get(self.null, f"results.summary.{group}.{stat}") if self.null else None

    def record(self):
        """The run's trajectory record (analysis/trajectory_record.safetensors) when results/ has
        it."""
        path = self.res.path(f"{self.dir}/analysis/trajectory_record.safetensors")
        return load_record(path) if os.path.isfile(path) else None

    def steps(self) -> list[int]:
        return get(self.pca, "snapshot_steps", [])

    def increment_norms_sq(self, group: str) -> np.ndarray | None:
        """||d(t)||^2 of the PCA rows: u_norm of the update analysis when its updates are exactly
        the increments between the PCA's rows (same anchor, same steps)."""
        u = self.update
        if u is None or self.pca is None:
            return None
        # the two analyses may have been run with different anchors or snapshot steps; then the
        # update norms are of other increments and would give a wrong matched null
        same = (
            get(u, "u_steps") == self.steps()
            and get(u, "anchor") == get(self.pca, "anchor")
            and get(u, "u_prev_steps", [None])[0] == get(self.pca, "anchor")
        )
        n = get(u, f"groups.{group}.u_norm")
        return np.asarray(n, float) ** 2 if same and n else None

    def pc1(self, group: str):
        return group_key(self.pca, group, "pc1")

    def nulls(self, group: str) -> dict:
        """PC1 and its nulls: theory (8/pi^2 at this T), shuffle, random directions, matched (with
        source)."""
        p = self.pca
        out = {
            "pc1": self.pc1(group),
            "theory": get(p, "theory.uncentered_T.0", 8 / math.pi**2),
            "shuffle": get(p, f"results.{group}.null_shuffle") or {},
            "directions": get(p, f"results.{group}.null_random_directions") or {},
        }
        # the matched null from the best source there is, named so the report can say which:
        # the analysis's own, then one from the increment norms, then the random-directions mean
        m, src = group_key(p, group, "null_matched_pc1"), "analysis"
        if m is None and (n2 := self.increment_norms_sq(group)) is not None:
            m, src = matched_null_pc1(n2), "increment norms"
        if m is None and out["directions"].get("mean") is not None:
            m, src = out["directions"]["mean"], "random-directions mean"
        out["matched"], out["matched_source"] = m, (src if m is not None else None)
        return out

    def coherence(self, group: str):
        c = group_key(self.pca, group, "coherence")
        if c is not None:
            return c
        # an analysis without it: geometry.coherence's ratio ||x(T)||^2 / sum_t ||d(t)||^2 from
        # its displacement norms and the increment norms
        n2 = self.increment_norms_sq(group)
        x = get(self.pca, f"results.{group}.decomposition.norm")
        return float(x[-1] ** 2 / n2.sum()) if n2 is not None and x else None

    def coherence_running(self, group: str):
        c = group_key(self.pca, group, "coherence_running")
        if c is not None:
            return c
        n2 = self.increment_norms_sq(group)
        x = get(self.pca, f"results.{group}.decomposition.norm")
        if n2 is None or not x:
            return None
        return (np.asarray(x, float) ** 2 / np.cumsum(n2)).tolist()

    def decomposition(self, group: str) -> dict:
        return get(self.pca, f"results.{group}.decomposition") or {}

    def p_ood_at(self, steps) -> list:
        by = {m["step"]: m.get("p_ood") for m in self.metrics}
        if not by:  # results/ without the metrics file: the copy the PCA analysis keeps
            ev = get(self.pca, "eval_steps", [])
            by = dict(zip(ev, get(self.pca, "p_ood", []) or []))
        return [by.get(s) for s in steps]


def seeds_of(res: Results) -> list[Seed]:
    return [Seed(res, s) for s in res.seeds()]


def pct(x, nd: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{nd}f}%"


def pct_range(xs, nd: int = 1) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    lo, hi = min(xs), max(xs)
    # one number when the two would print the same at nd decimals of a percent
    if abs(hi - lo) < 0.5 * 10 ** (-nd - 2):
        return pct(lo, nd)
    return f"{100 * lo:.{nd}f}-{100 * hi:.{nd}f}%"


def sci(x, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}e}"


def fisher_rows(s: Seed, group: str = "trunk") -> list[tuple[int, dict]]:
    """(step, the Fisher analysis's numbers of `group`) per analysed snapshot (empty without it)."""
    t = get(s.fisher, "table", []) if s.fisher else []
    return [(r["step"], r["groups"][group]) for r in t if group in r.get("groups", {})]


def sgd_rows(res: Results) -> dict[str, dict]:
    """run -> window row of every optimizer run: Table 9's (sgd_control.json: A, B, C), C'
    (sgd_nesterov.json) and the new controls (backbone_controls.json: D, A0, D0, and A again, the
    same run folder)."""
    d = res.json("sgd_control/sgd_control.json")
    rows = {r["run"]: r for r in get(d, "rows", [])} if d else {}
    cp = res.json("sgd_control/sgd_nesterov.json")
    if cp and "C'" not in rows and get(cp, "row"):
        rows["C'"] = get(cp, "row")
    bc = res.json("sgd_control/backbone_controls.json")
    for r in get(bc, "rows", []) if bc else []:
        rows.setdefault(r["run"], r)  # Table 9's own row of A wins over the controls' copy
    return rows


def mechanics_rows(res: Results) -> list[dict] | None:
    """rows of results/<version>/nulls/mechanics.json (None when absent): what each optimizer
    ingredient alone makes of pure Gaussian noise gradients (optimizer_null.py --mechanics). Per
    row: ingredient, description and, per group, {stat: {mean, sd, min, max, n}} over the seeds."""
    d = res.json(MECHANICS_JSON)
    rows = get(d, "rows") if d else None
    return rows if isinstance(rows, list) else None


def robust_rows(res: Results) -> list[dict] | None:
    """rows of results/<version>/claims_robust.json (None when absent): {claim, seed, verdicts:
    {definition: verdict}, depends_on: [definitions whose verdict differs from the first's]}."""
    d = res.json(ROBUST_JSON)
    rows = get(d, "rows") if d else None
    return rows if isinstance(rows, list) else None


def unigram(res: Results):
    st = res.corpus_stats()
    return get(st, "ngram_val_nats.1") if st else None


def val_curve(metrics: list[dict]) -> dict[int, float]:
    """{step: validation loss} of a run's metrics rows (the evals)."""
    return {r["step"]: r["val_loss"] for r in metrics if r.get("val_loss") is not None}


def beta2_curves(res: Results) -> dict[float, tuple[dict[int, float], str]]:
    """beta2 -> ({step: validation loss}, status) of the beta2 sweep's runs
    (beta2/runs/beta2_<b>_seed42)."""
    root = res.path("beta2/runs")
    out = {}
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        cfg = res.json(f"beta2/runs/{name}/config.json")
        m = res.metrics(f"beta2/runs/{name}/metrics.jsonl")
        if cfg and m:
            st = res.json(f"beta2/runs/{name}/status.json") or {}
            out[float(get(cfg, "config.beta2"))] = (val_curve(m), st.get("status", "unknown"))
    return dict(sorted(out.items()))


def open_results(root: str, version: str | None) -> "Results":
    """Results of `root`/`version` (default: the newest version with a seed run); one error line
    if absent."""
    if not os.path.isdir(root):
        fail(f"--results {root}: not a folder")
    res = Results(root, version)
    if res.dir is None or not os.path.isdir(res.dir):
        fail(f"no corpus version folder in {root}" + (f" ({version})" if version else ""))
    return res


def run_results(run: str) -> Results:
    """A Results view of one run folder (runs/tiny_seed42): its parent as the version folder, the
    run as the only seed (its twin <run>_wd0 beside it)."""
    if not os.path.isfile(os.path.join(run, "config.json")):
        fail(f"--run {run}: no config.json")
    parent = os.path.dirname(os.path.abspath(run))
    # version "" skips the search for v<N> folders; the run's parent plays the version folder
    res = Results(parent, version="")
    res.dir, res.version = parent, os.path.basename(parent)
    cfg = res.json(os.path.join(os.path.basename(run), "config.json"))
    seed = int(get(cfg, "config.seed", 0))
    # Seed(res, seed) then finds the run under its own folder name rather than seed<N>
    res.names = {seed: os.path.basename(os.path.normpath(run))}
    res.seeds = lambda: [seed]
    return res
