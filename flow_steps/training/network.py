"""The LSTM network: its architecture, and compiled networks a long-lived process trains again.

Imports TensorFlow: only what trains or scores imports this module.
"""

from __future__ import annotations

import weakref

import keras


def build_lstm(window: int, units: int, learning_rate: float = 1e-3) -> keras.Model:
    """Two stacked LSTM layers of `units` and a Dense output: one scaled log return per window."""
    model = keras.Sequential(
        [
            keras.Input(shape=(window, 1)),
            keras.layers.LSTM(units, return_sequences=True),
            keras.layers.LSTM(units),
            keras.layers.Dense(1),
        ],
        name="stock_lstm",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


# Compiled LSTMs whose training and prediction graphs this process has traced, free for the next fit of
# the same shape (a universe worker fits one ticker after another). Tracing costs about 2 CPU-seconds a
# fit and leaves graphs behind that clear_session does not free: measured, about 20 MiB a ticker.
_FREE_TRACED: dict[tuple[int, int], list[keras.Model]] = {}
MAX_FREE_TRACED = 4  # per shape: more than a fit and its backtest folds hold at once is never needed


def seeded_model(window: int, units: int, seed: int) -> keras.Model:
    """A compiled LSTM with the initial weights of `build_lstm` after `set_random_seed(seed)`: a model
    this process has traced before, given those weights and a fresh optimizer, when one is free."""
    keras.utils.set_random_seed(seed)
    fresh = build_lstm(window, units)
    free = _FREE_TRACED.get((window, units))
    if not free:
        return fresh
    model = free.pop()
    model.set_weights(fresh.get_weights())
    fresh.optimizer.build(fresh.trainable_variables)
    for variable, initial in zip(model.optimizer.variables, fresh.optimizer.variables, strict=True):
        variable.assign(initial)
    return model


def free_when_gone(owner: object, model: keras.Model, window: int, units: int) -> None:
    """Free `model` for the next fit of its shape once nothing holds `owner` (the fit that made it)."""
    weakref.finalize(owner, _free, model, _FREE_TRACED.setdefault((window, units), []))


def _free(model: keras.Model, free: list[keras.Model]) -> None:
    if len(free) < MAX_FREE_TRACED:
        free.append(model)
