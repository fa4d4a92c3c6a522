"""Portfolio decisions under budget constraints: the multiple-choice knapsack problem (MCKP).

Every item ``i`` (an account at a limit decision) takes exactly one option ``k`` among its allowed ones
(a line on the grid). Option ``k`` of item ``i`` is worth ``value[i, k]`` and uses ``weights[j, i, k]`` of
resource ``j`` (total exposure, expected loss, ...), whose sum over items may not exceed ``capacity[j]``::

    max  sum_ik value[i,k] x[i,k]
    s.t. sum_k x[i,k] = 1                           for every item i (only allowed options)
         sum_ik weights[j,i,k] x[i,k] <= capacity[j]  for every resource j
         x binary

:func:`solve_mckp` solves it exactly with a MILP solver (HiGHS through ``scipy.optimize.milp``; the LP
relaxation of an MCKP with m side constraints has at most m fractional items, so branch and bound closes
fast) and reports the solver's own upper bound, hence a proven optimality gap. Above ``max_milp_vars``
binaries, or when the MILP finds no incumbent in its time limit, a Lagrangian relaxation gives the answer:
the dual ``g(lam) = sum_i max_k (v_ik - lam . w_ik) + lam . capacity`` is an upper bound for any
``lam >= 0``; it is minimised by projected subgradient steps and the best feasible primal choice met on the
way (``argmax_k v_ik - lam . w_ik`` at a ``lam`` whose choice fits) is returned with the gap to the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp


class InfeasibleError(ValueError):
    """No assignment satisfies the constraints (even the cheapest option of every item is over budget)."""


@dataclass
class MCKPResult:
    choice: np.ndarray  # option index per item (int64)
    objective: float  # sum of values of the chosen options
    bound: float  # proven upper bound on the optimum
    usage: np.ndarray  # resource use of the choice, per constraint
    method: str  # "milp" | "lagrangian" | "unconstrained"
    status: str
    info: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Relative optimality gap (bound - objective) / max(|bound|, 1e-9), >= 0."""
        return float(max(self.bound - self.objective, 0.0) / max(abs(self.bound), 1e-9))


def _check(value: np.ndarray, weights: np.ndarray, capacity: np.ndarray, allowed: np.ndarray | None):
    value = np.asarray(value, dtype=np.float64)
    if value.ndim != 2:
        raise ValueError(f"value must be (items, options), got shape {value.shape}")
    n, k = value.shape
    weights = np.asarray(weights, dtype=np.float64).reshape(-1, n, k)
    capacity = np.asarray(capacity, dtype=np.float64).reshape(-1)
    if len(capacity) != len(weights):
        raise ValueError(f"{len(weights)} weight matrices but {len(capacity)} capacities")
    allowed = np.ones((n, k), bool) if allowed is None else np.asarray(allowed, bool)
    if allowed.shape != (n, k):
        raise ValueError(f"allowed must have shape {(n, k)}, got {allowed.shape}")
    if n and not allowed.any(axis=1).all():
        bad = int(np.flatnonzero(~allowed.any(axis=1))[0])
        raise InfeasibleError(f"item {bad} has no allowed option")
    if not np.isfinite(value[allowed]).all() or not np.isfinite(weights[:, allowed]).all():
        raise ValueError("values and weights of allowed options must be finite")
    return value, weights, capacity, allowed


def evaluate_choice(value: np.ndarray, weights: np.ndarray, choice: np.ndarray) -> tuple[float, np.ndarray]:
    """Objective and resource use of ``choice`` (option index per item)."""
    value = np.asarray(value, dtype=np.float64)
    n = value.shape[0]
    weights = np.asarray(weights, dtype=np.float64).reshape(-1, n, value.shape[1])
    rows = np.arange(n)
    return float(value[rows, choice].sum()), weights[:, rows, choice].sum(axis=1)


def _greedy_fill(v, w, cap, allowed, choice) -> np.ndarray:
    """Improve a feasible choice: apply upgrades (higher value) in order of value gain per unit of
    capacity used, each only if everything still fits (one pass, deterministic order)."""
    n, k = v.shape
    rows = np.arange(n)
    choice = choice.copy()
    use = w[:, rows, choice].sum(axis=1)
    dv = v - v[rows, choice][:, None]
    dw = w - w[:, rows, choice][:, :, None]
    cost = np.clip(dw, 0, None).sum(axis=0)
    cand = allowed & (dv > 1e-15)
    ii, kk = np.nonzero(cand)
    if len(ii) == 0:
        return choice
    ratio = dv[ii, kk] / (cost[ii, kk] + 1e-12)
    order = np.lexsort((kk, ii, -ratio))
    moved = np.zeros(n, bool)
    for o in order:
        i, kx = ii[o], kk[o]
        if moved[i]:
            continue
        new_use = use + dw[:, i, kx]
        if np.all(new_use <= cap + 1e-12):
            use = new_use
            choice[i] = kx
            moved[i] = True
    return choice


def _lagrangian(
    value, weights, capacity, allowed, iters: int = 300, start: np.ndarray | None = None
) -> MCKPResult:
    """Projected-subgradient minimisation of the Lagrangian dual; best feasible primal met on the way
    (``start``, a known feasible choice, is the incumbent to beat). ``status`` is "no_feasible" when no
    feasible choice was met (``choice`` is then the last, infeasible one)."""
    n, k = value.shape
    m = len(capacity)
    neg = np.where(allowed, 0.0, -np.inf)
    # scale each resource to its capacity so one step size serves all
    scale = np.where(np.abs(capacity) > 0, np.abs(capacity), 1.0)
    w = weights / scale[:, None, None]
    cap = capacity / scale
    vscale = max(float(np.abs(value[allowed]).sum()), 1e-9)
    v = value / vscale
    rows = np.arange(n)

    def inner(lam):
        red = v - np.tensordot(lam, w, axes=1) + neg
        c = np.argmax(red, axis=1)
        return c, float(red[rows, c].sum() + lam @ cap)

    lam = np.zeros(m)
    best_bound, best_obj, best_choice = np.inf, -np.inf, None
    if start is not None:
        start = np.asarray(start, dtype=np.int64)
        if np.all(w[:, rows, start].sum(axis=1) <= cap + 1e-12) and allowed[rows, start].all():
            best_obj, best_choice = float(v[rows, start].sum()), start
    step0 = 1.0
    best_lam = lam.copy()
    for it in range(iters):
        c, g = inner(lam)
        if g < best_bound:
            best_bound, best_lam = g, lam.copy()
        use = w[:, rows, c].sum(axis=1)
        if np.all(use <= cap + 1e-12):
            obj = float(v[rows, c].sum())
            if obj > best_obj:
                best_obj, best_choice = obj, c
        sub = cap - use  # gradient of g in lam
        norm = float(np.sqrt(sub @ sub))
        if norm < 1e-15:
            break
        step = step0 / np.sqrt(it + 1) * max(abs(g - max(best_obj, 0.0)), 1e-6) / norm
        lam = np.maximum(lam - step * sub, 0.0)
    # primal heuristics: scale the best dual multipliers up until the choice fits, then fill greedily
    for s_ in np.exp(np.linspace(0.0, np.log(50.0), 60)):
        lam_s = best_lam * s_ + (1e-6 if not best_lam.any() else 0.0)
        c, _ = inner(lam_s)
        use = w[:, rows, c].sum(axis=1)
        if np.all(use <= cap + 1e-12):
            c = _greedy_fill(v, w, cap, allowed, c)
            obj = float(v[rows, c].sum())
            if obj > best_obj:
                best_obj, best_choice = obj, c
            break
    if best_choice is not None:
        c = _greedy_fill(v, w, cap, allowed, best_choice)
        if float(v[rows, c].sum()) > best_obj:
            best_choice, best_obj = c, float(v[rows, c].sum())
    if best_choice is None:
        # push multipliers up until the choice fits (the cheapest-option assignment fits, checked by caller)
        lam = np.maximum(lam, 1.0)
        for _ in range(200):
            c, g = inner(lam)
            best_bound = min(best_bound, g)
            use = w[:, rows, c].sum(axis=1)
            if np.all(use <= cap + 1e-12):
                best_choice, best_obj = c, float(v[rows, c].sum())
                break
            lam = lam * 2.0 + (use > cap)
    if best_choice is None:
        return MCKPResult(
            c.astype(np.int64),
            -np.inf,
            float(best_bound * vscale),
            w[:, rows, c].sum(axis=1) * scale,
            "lagrangian",
            "no_feasible",
        )
    obj, usage = evaluate_choice(value, weights, best_choice)
    return MCKPResult(
        choice=best_choice.astype(np.int64),
        objective=obj,
        bound=float(best_bound * vscale),
        usage=usage,
        method="lagrangian",
        status="heuristic",
        info={"multipliers": (lam / scale * vscale).tolist()},
    )


def solve_mckp(
    value: np.ndarray,
    weights: np.ndarray,
    capacity: np.ndarray,
    allowed: np.ndarray | None = None,
    *,
    time_limit_s: float = 30.0,
    mip_rel_gap: float = 1e-6,
    gap_tol: float = 1e-4,
    max_milp_vars: int = 60_000,
    start: np.ndarray | None = None,
) -> MCKPResult:
    """Maximise the total value of one option per item under ``len(capacity)`` knapsack constraints.

    ``value`` (n, K); ``weights`` (m, n, K) or (n, K) for one constraint; ``capacity`` (m,);
    ``allowed`` (n, K) bool (options outside it are never chosen). Raises :class:`InfeasibleError` when
    the cheapest options already exceed a capacity. Deterministic for the same inputs.

    Order: the unconstrained optimum if it fits; else the Lagrangian (fast, with a proven bound); if its gap
    exceeds ``gap_tol`` and the instance has at most ``max_milp_vars`` binaries, the exact MILP (HiGHS),
    keeping whichever solution is better and the tighter bound.
    """
    value, weights, capacity, allowed = _check(value, weights, capacity, allowed)
    n, k = value.shape
    m = len(capacity)
    rows = np.arange(n)
    if n == 0:
        return MCKPResult(np.zeros(0, np.int64), 0.0, 0.0, np.zeros(m), "unconstrained", "optimal")
    # the unconstrained optimum is optimal when it fits
    free = np.argmax(np.where(allowed, value, -np.inf), axis=1)
    obj, use = evaluate_choice(value, weights, free)
    if np.all(use <= capacity * (1 + 1e-12) + 1e-9):
        return MCKPResult(free.astype(np.int64), obj, obj, use, "unconstrained", "optimal")
    for j in range(m):
        floor = np.where(allowed, weights[j], np.inf).min(axis=1).sum()
        if floor > capacity[j] * (1 + 1e-9) + 1e-9:
            raise InfeasibleError(
                f"constraint {j}: even the cheapest allowed options use {floor:.6g} > capacity {capacity[j]:.6g}"
            )
    lag = _lagrangian(value, weights, capacity, allowed, start=start)
    ii, kk = np.nonzero(allowed)
    nv = len(ii)
    if lag.status != "no_feasible" and (lag.gap <= gap_tol or nv > max_milp_vars):
        return lag
    if nv > max_milp_vars:
        raise InfeasibleError("no feasible assignment found (instance too large for the exact MILP)")
    # scale rows (constraints to their capacity, objective to O(1) per item) for numerical stability
    scale = np.where(np.abs(capacity) > 0, np.abs(capacity), 1.0)
    vscale = max(float(np.abs(value[ii, kk]).max()), 1e-9)
    c = -value[ii, kk] / vscale
    assign = sparse.csr_matrix((np.ones(nv), (ii, np.arange(nv))), shape=(n, nv))
    knap = sparse.csr_matrix(weights[:, ii, kk] / scale[:, None])
    cons = [
        LinearConstraint(assign, lb=np.ones(n), ub=np.ones(n)),
        LinearConstraint(knap, lb=np.full(m, -np.inf), ub=capacity / scale),
    ]
    res = milp(
        c,
        constraints=cons,
        integrality=np.ones(nv),
        bounds=Bounds(0, 1),
        options={"time_limit": float(time_limit_s), "mip_rel_gap": float(mip_rel_gap), "presolve": True},
    )
    if res.x is None:
        if res.status == 2:  # infeasible
            raise InfeasibleError(f"MILP infeasible: {res.message}")
        if lag.status == "no_feasible":
            raise InfeasibleError(f"no feasible assignment found: {res.message}")
        lag.info["milp_status"] = str(res.message)
        return lag
    x = res.x.reshape(-1)
    choice = np.zeros(n, np.int64)
    # per item, the option with the largest x (exactly one is 1 at an integral solution)
    order = np.lexsort((-x, ii))
    first = np.ones(nv, bool)
    first[1:] = ii[order][1:] != ii[order][:-1]
    choice[ii[order][first]] = kk[order][first]
    obj, use = evaluate_choice(value, weights, choice)
    dual = getattr(res, "mip_dual_bound", None)
    bound = -float(dual) * vscale if dual is not None and np.isfinite(dual) else obj
    bound = max(min(bound, lag.bound), obj)
    status = "optimal" if res.status == 0 else "time_limit"
    # guard: numerical slack of the solver must not break a constraint
    if lag.status != "no_feasible" and (np.any(use > capacity * (1 + 1e-9) + 1e-9) or obj < lag.objective):
        lag.info["milp_status"] = "milp solution not better than the Lagrangian or over a capacity"
        lag.bound = min(lag.bound, max(bound, lag.objective))
        return lag
    if np.any(use > capacity * (1 + 1e-9) + 1e-9):
        raise InfeasibleError("the MILP solution exceeds a capacity beyond numerical tolerance")
    _ = rows
    return MCKPResult(choice, obj, bound, use, "milp", status, info={"milp_message": str(res.message)})


def brute_force_mckp(
    value: np.ndarray, weights: np.ndarray, capacity: np.ndarray, allowed: np.ndarray | None = None
) -> tuple[np.ndarray | None, float]:
    """Exhaustive optimum of a tiny MCKP (tests only): returns (choice, objective); (None, -inf) if infeasible."""
    import itertools

    value, weights, capacity, allowed = _check(value, weights, capacity, allowed)
    n, _ = value.shape
    opts = [np.flatnonzero(allowed[i]) for i in range(n)]
    best, best_c = -np.inf, None
    for combo in itertools.product(*opts):
        c = np.array(combo, dtype=np.int64)
        obj, use = evaluate_choice(value, weights, c)
        if np.all(use <= capacity + 1e-9) and obj > best + 1e-12:
            best, best_c = obj, c
    return best_c, best
