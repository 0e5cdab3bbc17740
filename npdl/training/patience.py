"""Early stopping with patience counted in minibatches, as in the Theano DeepLearningTutorials.

The tutorials (``logistic_sgd.py``, ``mlp.py``, ``convolutional_mlp.py``) train with::

    patience = 5000; patience_increase = 2; improvement_threshold = 0.995
    validation_frequency = min(n_train_batches, patience // 2)
    ...
    iter = (epoch - 1) * n_train_batches + minibatch_index
    if (iter + 1) % validation_frequency == 0:
        this_validation_loss = mean(validation zero-one errors)
        if this_validation_loss < best_validation_loss:
            if this_validation_loss < best_validation_loss * improvement_threshold:
                patience = max(patience, iter * patience_increase)
            best_validation_loss = this_validation_loss
            test_score = mean(test zero-one errors)
    if patience <= iter:
        done_looping = True; break

So the run always gets ``patience`` minibatches, and every *significant*
improvement (better by more than 0.5 %) extends it to twice the iteration at
which it was seen. An improvement too small to be significant still becomes the
new best (and is what the tutorial reports) but buys no extra patience.

:class:`PatienceRule` is that rule as a small pure class (no model, no arrays),
so it can be tested on a list of numbers; :class:`PatienceEarlyStopping` runs it
inside :meth:`Sequential.fit` through ``on_batch_end``.
"""

from __future__ import annotations

import math

from .callbacks import Callback
from .errors import TrainingDivergedError
from .loop import check_held_out


class PatienceRule:
    """The tutorials' patience bookkeeping. Iterations are 0-based minibatch counts over the whole run."""

    def __init__(self, patience=5000, patience_increase=2, improvement_threshold=0.995):
        if int(patience) < 1:
            raise ValueError(f"PatienceRule: patience must be >= 1 minibatch, got {patience}")
        self.patience = int(patience)
        self.initial_patience = self.patience
        self.patience_increase = float(patience_increase)
        self.improvement_threshold = float(improvement_threshold)
        self.best = math.inf
        self.best_iteration = None

    def validation_frequency(self, n_train_batches: int) -> int:
        """``min(n_train_batches, patience // 2)``: validate at least once per epoch, and at least
        twice within the initial patience (floored at 1 so a tiny patience still validates)."""
        return max(1, min(int(n_train_batches), self.initial_patience // 2))

    def update(self, iteration: int, validation_loss: float) -> bool:
        """Record a validation result seen at ``iteration``; True when it is a new best."""
        if validation_loss < self.best:
            if validation_loss < self.best * self.improvement_threshold:
                self.patience = max(self.patience, int(iteration * self.patience_increase))
            self.best = float(validation_loss)
            self.best_iteration = int(iteration)
            return True
        return False

    def should_stop(self, iteration: int) -> bool:
        """``patience <= iter``: checked after every minibatch, validated or not."""
        return self.patience <= int(iteration)

    def run(self, validation_losses, validation_frequency: int = 1):
        """Replay a validation curve: ``validation_losses[k]`` is seen at iteration
        ``(k + 1) * validation_frequency - 1``. Returns the iteration at which training
        stops, or ``None`` if it would not stop before the validation after the last one given."""
        iteration = 0
        for k, loss in enumerate(validation_losses):
            validated_at = (k + 1) * validation_frequency - 1
            while iteration < validated_at:  # minibatches without validation: only the stop test
                if self.should_stop(iteration):
                    return iteration
                iteration += 1
            self.update(iteration, loss)
            if self.should_stop(iteration):
                return iteration
            iteration += 1
        # the minibatches after the last validation, up to where the next one would be
        while iteration < (len(validation_losses) + 1) * validation_frequency - 1:
            if self.should_stop(iteration):
                return iteration
            iteration += 1
        return None


class PatienceEarlyStopping(Callback):
    """Validate every ``validation_frequency`` minibatches and stop by the tutorials' patience rule.

    ``validation_data=(x_val, y_val)``; ``test_data=(x_test, y_test)`` (optional) is
    scored each time validation improves, giving the tutorials' "test performance
    of the best model". ``monitor`` is ``"error"`` (zero-one error, the tutorials'
    choice; default for classifiers) or ``"loss"``. ``restore_best=True`` copies
    the parameters at each new best (on the device) and puts them back at the end,
    so the model is the one the reported scores belong to. ``drop_last=True`` scores
    whole batches of ``batch_size`` only, as the tutorials do (``n // batch_size`` batches).

    Both sets are checked when training begins (an empty one, or labels out of range,
    fail before the first minibatch). A validation or test loss that is NaN or infinite
    raises :class:`npdl.training.TrainingDivergedError` at once: such a model is never
    recorded as the best (its zero-one error would be 1, but a run that produced it
    has diverged). ``best_state`` still holds the best parameters seen before.

    Afterwards: ``best_validation``, ``best_iteration``, ``test_score``,
    ``stopped_iteration`` (None if the epochs ran out first) and ``validations``
    (a list of ``(iteration, value)``).
    """

    def __init__(self, validation_data, test_data=None, patience=5000, patience_increase=2,
                 improvement_threshold=0.995, validation_frequency=None, monitor=None, restore_best=True,
                 batch_size=256, verbose=0, drop_last=False):
        super().__init__()
        self.validation_data, self.test_data = validation_data, test_data
        self.rule_args = (patience, patience_increase, improvement_threshold)
        self.requested_frequency = validation_frequency
        self.monitor, self.restore_best = monitor, bool(restore_best)
        self.batch_size, self.verbose, self.drop_last = int(batch_size), int(verbose), bool(drop_last)
        self._at = (0, 0)  # (iteration, minibatch) of the score being taken

    def state_dict(self) -> dict:
        """The bookkeeping needed to resume (JSON-able; the best parameters are saved apart)."""
        return {"patience": self.rule.patience, "best": self.rule.best, "best_iteration": self.rule.best_iteration,
                "best_validation": self.best_validation, "test_score": self.test_score,
                "validations": [list(v) for v in self.validations]}

    def resume_from(self, state: dict, best_state=None) -> None:
        """Continue a run: ``state`` from :meth:`state_dict`, ``best_state`` the parameters at its best.
        Applied when training begins (``fit`` with ``initial_epoch`` > 0)."""
        self._resume = (dict(state), best_state)

    def on_train_begin(self, logs=None):
        self.rule = PatienceRule(*self.rule_args)
        self.n_train_batches = int(self.params["steps"])
        self.frequency = int(self.requested_frequency or self.rule.validation_frequency(self.n_train_batches))
        self.metric = self.monitor or ("error" if self.model.is_classifier else "loss")
        self.epoch = int(self.params.get("initial_epoch", 0))
        # moved to the model's device once, not at every validation
        device = self.model.device
        self._validation = tuple(device.asarray(a) for a in self.validation_data[:2])
        self._test = None if self.test_data is None else tuple(device.asarray(a) for a in self.test_data[:2])
        # an empty or mislabelled set fails now, not at the first validation
        check_held_out(self.model, *self._validation, "validation_data")
        if self._test is not None:
            check_held_out(self.model, *self._test, "test_data")
        self.best_validation, self.best_iteration, self.test_score = math.inf, None, None
        self.stopped_iteration, self.best_state, self.validations = None, None, []
        state, best_state = getattr(self, "_resume", (None, None))
        if state is not None:
            self.rule.patience, self.rule.best = int(state["patience"]), float(state["best"])
            self.rule.best_iteration = state["best_iteration"]
            self.best_validation, self.best_iteration = float(state["best_validation"]), state["best_iteration"]
            self.test_score = state["test_score"]
            self.validations = [tuple(v) for v in state["validations"]]
            self.best_state = best_state
            self._resume = (None, None)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = int(epoch)

    def _score(self, data) -> float:
        """The monitored value on ``data``; a non-finite loss there stops the run (it is never a best)."""
        scores = self.model.evaluate(data[0], data[1], batch_size=self.batch_size, drop_last=self.drop_last,
                                     metrics=[self.metric] if self.metric != "loss" else [])
        if not math.isfinite(scores["loss"]):
            iteration, batch = self._at
            best = ("no best model yet" if self.best_iteration is None else
                    f"the best so far (iteration {self.best_iteration}, validation {self.metric} "
                    f"{self.best_validation:.6f}) is in this callback's best_state: "
                    "model.load_state_dict(callback.best_state)")
            raise TrainingDivergedError(
                f"training diverged in epoch {self.epoch + 1}: the {'test' if data is self._test else 'validation'} "
                f"loss is {scores['loss']} at minibatch {batch + 1} (iteration {iteration}); {best}. Try a smaller "
                "learning rate or clip_norm, and check the data for NaN/inf.", self.epoch + 1, batch + 1, batch + 1)
        return scores[self.metric]

    def on_batch_end(self, batch, logs=None):
        iteration = self.epoch * self.n_train_batches + int(batch)
        if (iteration + 1) % self.frequency == 0:
            self._at = (iteration, int(batch))  # where a diverged score is reported
            value = self._score(self._validation)
            self.validations.append((iteration, value))
            if self.rule.update(iteration, value):
                self.best_validation, self.best_iteration = value, iteration
                if self._test is not None:
                    self.test_score = self._score(self._test)
                if self.restore_best:
                    self.best_state = self.model.state_dict(copy=True)
            if self.verbose:
                print(f"epoch {self.epoch + 1}, minibatch {batch + 1}/{self.n_train_batches}, "
                      f"validation {self.metric} {value:.6f} (best {self.rule.best:.6f}, "
                      f"patience {self.rule.patience})")
        if self.rule.should_stop(iteration):
            self.stopped_iteration = iteration
            self.model.stop_training = True

    @property
    def patience(self) -> int:
        return self.rule.patience

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
