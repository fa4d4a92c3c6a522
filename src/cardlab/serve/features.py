"""One application's model inputs: the stored customer row merged with the application's own fields.

Each model feature has one source, fixed when the service starts:

- ``store``: the customer's materialised row at the application's as-of month (:mod:`cardlab.serve.store`);
- ``request``: evaluated per request with the build code's own expressions on a one-row frame - the features
  that depend on the exact application date (:func:`cardlab.features.build.as_of_exprs`) and the application
  features (:func:`cardlab.features.build.application_catalog`: legacy score, partner bank code);
- ``account``: a card not booked yet (first-line decisions), materialised per month;
- ``treatment``: the limit models' line columns, set by the limit task's own code.

A model feature with no source stops the service at start (``/readyz`` stays false) with its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from cardlab.features.build import application_catalog, as_of_exprs
from cardlab.serve.store import FeatureStore, StoredRow, StoreError

# request fields -> the raw application columns the feature code reads (as the credit snapshots name them)
APPLICATION_FIELDS = {"legacy_score": "app_legacy_score", "partner_bank": "app_partner_bank"}


@dataclass
class Plan:
    """Where each of a model's features comes from, as index arrays for one vectorised gather."""

    features: list[str]
    store_pos: np.ndarray
    store_idx: np.ndarray
    request_pos: np.ndarray
    request_idx: np.ndarray
    account_pos: np.ndarray
    account_idx: np.ndarray


class OnlineFeatures:
    """Merges stored rows with application fields, with the expressions of the batch feature code."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        app = application_catalog(list(APPLICATION_FIELDS.values()), store.partner_banks)
        self._exprs = [*as_of_exprs(store.has_signup), *app.exprs]
        self.request_names = [e.meta.output_name() for e in self._exprs]
        self._request_index = {n: i for i, n in enumerate(self.request_names)}
        self._account_index = {c: i for i, c in enumerate(store.account_columns)}
        inputs = {r for e in self._exprs for r in e.meta.root_names()}
        stored_inputs = {s["name"]: s["dtype"] for s in store.meta["as_of_inputs"]}
        self._schema: dict[str, pl.DataType | type[pl.DataType]] = {"snapshot_date": pl.Date}
        for name in sorted(inputs - {"snapshot_date"}):
            if name in stored_inputs:
                self._schema[name] = pl.Date if stored_inputs[name] == "Date" else pl.Float64
            elif name == APPLICATION_FIELDS["partner_bank"]:
                self._schema[name] = pl.String
            elif name in APPLICATION_FIELDS.values():
                self._schema[name] = pl.Float64
            else:
                raise StoreError(
                    f"the request-time feature expressions read {name!r}, which is neither stored nor an "
                    f"application field ({sorted(APPLICATION_FIELDS)}): re-run `cardlab materialize`"
                )

    def plan(self, features: list[str], *, model: str, allow_account: bool = False, skip=()) -> Plan:
        """Source of every feature of ``model`` (``skip``: columns the caller sets itself)."""
        pos: dict[str, list[int]] = {"store": [], "request": [], "account": []}
        idx: dict[str, list[int]] = {"store": [], "request": [], "account": []}
        missing = []
        for i, f in enumerate(features):
            if f in skip:
                continue
            if f in self._request_index:
                pos["request"].append(i)
                idx["request"].append(self._request_index[f])
            elif f in self.store.index:
                pos["store"].append(i)
                idx["store"].append(self.store.index[f])
            elif allow_account and f in self._account_index:
                pos["account"].append(i)
                idx["account"].append(self._account_index[f])
            else:
                missing.append(f)
        if missing:
            raise StoreError(
                f"{model} needs features the feature store {self.store.path} does not hold: {missing[:8]} "
                "(re-run `cardlab materialize` with the feature code the model was trained on)"
            )

        def arr(key: str, src: dict) -> np.ndarray:
            return np.asarray(src[key], dtype=np.int64)

        return Plan(
            features,
            arr("store", pos),
            arr("store", idx),
            arr("request", pos),
            arr("request", idx),
            arr("account", pos),
            arr("account", idx),
        )

    def request_values(self, day: date, row: StoredRow, application: Mapping[str, object]) -> np.ndarray:
        """The request-time features for one application, as float64 in :attr:`request_names` order."""
        data: dict[str, list] = {"snapshot_date": [day]}
        for name in self._schema:
            if name == "snapshot_date":
                continue
            if name in row.as_of_inputs:
                data[name] = [row.as_of_inputs[name]]
            else:
                field = next(k for k, v in APPLICATION_FIELDS.items() if v == name)
                data[name] = [application.get(field)]
        frame = pl.DataFrame(data, schema=self._schema)
        out = frame.select(e.cast(pl.Float64) for e in self._exprs)
        return out.to_numpy().reshape(-1).astype(np.float64)

    def vector(self, plan: Plan, row: StoredRow, request: np.ndarray, t: int) -> np.ndarray:
        """The model's feature vector (float64, NaN = missing) in ``plan.features`` order."""
        vec = np.full(len(plan.features), np.nan)
        vec[plan.store_pos] = row.values[plan.store_idx]
        vec[plan.request_pos] = request[plan.request_idx]
        if len(plan.account_pos):
            vec[plan.account_pos] = self.store.new_card[t][plan.account_idx]
        return vec
