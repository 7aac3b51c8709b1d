"""Knowledge distillation: a small student learns from a trained teacher, per pixel.

Loss (Hinton et al.)::

    L = alpha * task(y, p_s) + (1 - alpha) * T^2 * mean_pixels KL(q_t || q_s)  [+ beta * AT]

with ``q = act(z / T)`` the softened output of logits ``z``. For a sigmoid (one-class) model each
pixel is a two-class Bernoulli distribution, so the KL is::

    KL = q_t log(q_t / q_s) + (1 - q_t) log((1 - q_t) / (1 - q_s)),   q = sigmoid(z / T)

(exactly the two-class softmax KL with logits ``[0, z]``); for a softmax model it is the usual KL
over the classes of each pixel. ``T^2`` keeps the gradient scale of the soft term independent of
``T``. Logits are the output of the zoo's ``logits`` layer; for another model they are recovered
from the probabilities (``log p - log(1 - p)``, clipped at 1e-6).

Optional attention transfer (Zagoruyko and Komodakis) matches the spatial attention maps
``A = mean_c(F^2)`` (L2-normalized, resized to the student's size) of chosen teacher and student
layers; ``beta`` weights the mean squared distance between the normalized maps.

References:
    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015.
    Zagoruyko and Komodakis, "Paying More Attention to Attention", ICLR 2017.
    Liu et al., "Structured Knowledge Distillation for Semantic Segmentation", CVPR 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kseg._keras import keras, tf

_EPS = 1e-6


def logits_model(model: keras.Model) -> keras.Model:
    """A model sharing ``model``'s layers that returns the pre-activation logits."""
    try:
        layer = model.get_layer("logits")
    except ValueError:
        layer = None
    if layer is not None:
        return keras.Model(model.inputs, layer.output, name=f"{model.name}_logits")
    probs = model.outputs[0]
    sigmoid = probs.shape[-1] == 1
    z = _InverseActivation(sigmoid=sigmoid, name="inverse_activation")(probs)
    return keras.Model(model.inputs, z, name=f"{model.name}_logits")


class _InverseActivation(keras.layers.Layer):
    def __init__(self, sigmoid: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigmoid = sigmoid

    def call(self, p: tf.Tensor) -> tf.Tensor:
        p = tf.clip_by_value(tf.cast(p, tf.float32), _EPS, 1.0 - _EPS)
        return tf.math.log(p) - tf.math.log(1.0 - p) if self.sigmoid else tf.math.log(p)


def activate(logits: tf.Tensor) -> tf.Tensor:
    return tf.sigmoid(logits) if logits.shape[-1] == 1 else tf.nn.softmax(logits, axis=-1)


def soft_kl(student_logits: tf.Tensor, teacher_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """``T^2 * mean over pixels of KL(softened teacher || softened student)``."""
    t = float(temperature)
    zs = tf.cast(student_logits, tf.float32) / t
    zt = tf.cast(teacher_logits, tf.float32) / t
    if zs.shape[-1] == 1:
        # Bernoulli KL in log space: log q = log_sigmoid(z), log(1 - q) = log_sigmoid(-z).
        qt = tf.sigmoid(zt)
        kl = qt * (tf.math.log_sigmoid(zt) - tf.math.log_sigmoid(zs)) + (1.0 - qt) * (
            tf.math.log_sigmoid(-zt) - tf.math.log_sigmoid(-zs)
        )
        kl = kl[..., 0]
    else:
        log_qt = tf.nn.log_softmax(zt, axis=-1)
        log_qs = tf.nn.log_softmax(zs, axis=-1)
        kl = tf.reduce_sum(tf.exp(log_qt) * (log_qt - log_qs), axis=-1)
    return t * t * tf.reduce_mean(kl)


def attention_map(features: tf.Tensor, size: Sequence[int] | None = None) -> tf.Tensor:
    """Spatial attention ``mean_c(F^2)``, resized to ``size``, flattened and L2-normalized."""
    a = tf.reduce_mean(tf.square(tf.cast(features, tf.float32)), axis=-1, keepdims=True)
    if size is not None and tuple(a.shape[1:3]) != tuple(size):
        a = tf.image.resize(a, size, method="bilinear")
    a = tf.reshape(a, [tf.shape(a)[0], -1])
    return tf.math.l2_normalize(a, axis=-1)


def attention_loss(
    student_feats: Sequence[tf.Tensor], teacher_feats: Sequence[tf.Tensor]
) -> tf.Tensor:
    losses = []
    for fs, ft in zip(student_feats, teacher_feats, strict=True):
        size = fs.shape[1:3]
        losses.append(
            tf.reduce_mean(
                tf.reduce_sum(tf.square(attention_map(fs) - attention_map(ft, size)), -1)
            )
        )
    return tf.add_n(losses) / len(losses)


def distillation_loss(
    y_true: tf.Tensor,
    student_logits: tf.Tensor,
    teacher_logits: tf.Tensor,
    *,
    task_loss: Any,
    alpha: float = 0.5,
    temperature: float = 2.0,
) -> tf.Tensor:
    """``alpha * task(y, act(z_s)) + (1 - alpha) * T^2 * KL(q_t || q_s)`` (see module docstring)."""
    task = task_loss(y_true, activate(student_logits))
    return alpha * task + (1.0 - alpha) * soft_kl(student_logits, teacher_logits, temperature)


class Distiller(keras.Model):
    """Trains ``student`` against ``teacher`` (frozen) with :func:`distillation_loss`.

    Args:
        student, teacher: models with the same input and output shape (pixel contract).
        task_loss: Keras loss on probabilities (e.g. ``kseg.losses.get_loss("combo")``).
        alpha: weight of the task loss; ``1 - alpha`` weights the soft term.
        temperature: softening temperature ``T`` (> 0).
        attention_pairs: ``[(teacher_layer, student_layer), ...]`` for attention transfer, or
            ``"auto"``: the feature maps that feed each model's ``logits`` layer.
        beta: weight of the attention-transfer term.

    Example:
        >>> d = Distiller(student, teacher, task_loss=get_loss("combo"), alpha=0.5, temperature=2)
        >>> d.compile(optimizer="adam"); d.fit(x, y, epochs=5)
        >>> d.student.save("student.keras")
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        *,
        task_loss: Any,
        alpha: float = 0.5,
        temperature: float = 2.0,
        attention_pairs: Sequence[tuple[str, str]] | str = (),
        beta: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from kseg.errors import ConfigError

        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"distill alpha = {alpha} must be in [0, 1]")
        if temperature <= 0:
            raise ConfigError(f"distill temperature = {temperature} must be > 0")
        if tuple(student.output_shape[1:]) != tuple(teacher.output_shape[1:]):
            raise ConfigError(
                f"student output {student.output_shape[1:]} differs from teacher output {teacher.output_shape[1:]}"
            )
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.task_loss = task_loss
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.beta = float(beta)
        pairs = (
            _auto_pairs(teacher, student) if attention_pairs == "auto" else list(attention_pairs)
        )
        self.attention_pairs = pairs if self.beta > 0 else []
        s_logits = logits_model(student)
        t_logits = logits_model(teacher)
        s_out = [s_logits.output] + [student.get_layer(s).output for _, s in self.attention_pairs]
        t_out = [t_logits.output] + [teacher.get_layer(t).output for t, _ in self.attention_pairs]
        self._student_heads = keras.Model(student.inputs, s_out)
        self._teacher_heads = keras.Model(teacher.inputs, t_out)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_tracker = keras.metrics.Mean(name="task_loss")
        self.kd_tracker = keras.metrics.Mean(name="kd_loss")

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.task_tracker, self.kd_tracker]

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(x, training=training)

    def _distill_losses(
        self, x: tf.Tensor, y: tf.Tensor, training: bool
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        t_out = _as_list(self._teacher_heads(x, training=False))
        s_out = _as_list(self._student_heads(x, training=training))
        task = self.task_loss(y, activate(s_out[0]))
        kd = soft_kl(s_out[0], t_out[0], self.temperature)
        total = self.alpha * task + (1.0 - self.alpha) * kd
        if self.attention_pairs:
            total = total + self.beta * attention_loss(s_out[1:], t_out[1:])
        return total, task, kd

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        # ``((x, y), x_unlabeled)`` when a transfer set of unlabeled images rides along; on those
        # images only the logits are matched (no task term, no attention transfer).
        unlabeled = None
        if isinstance(data[0], (tuple, list)):
            (x, y), unlabeled = data[0], data[1]
        else:
            x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            total, task, kd = self._distill_losses(x, y, training=True)
            if unlabeled is not None:
                z_t = _as_list(self._teacher_heads(unlabeled, training=False))[0]
                z_s = _as_list(self._student_heads(unlabeled, training=True))[0]
                total = total + (1.0 - self.alpha) * soft_kl(z_s, z_t, self.temperature)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(
            zip(tape.gradient(total, variables), variables, strict=False)
        )
        return self._track(total, task, kd)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, y = data[0], data[1]
        return self._track(*self._distill_losses(x, y, training=False))

    def _track(self, total: tf.Tensor, task: tf.Tensor, kd: tf.Tensor) -> dict[str, tf.Tensor]:
        self.loss_tracker.update_state(total)
        self.task_tracker.update_state(task)
        self.kd_tracker.update_state(kd)
        return {m.name: m.result() for m in self.metrics}


def _as_list(x: Any) -> list[tf.Tensor]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _auto_pairs(teacher: keras.Model, student: keras.Model) -> list[tuple[str, str]]:
    def feeder(model: keras.Model) -> str:
        head = model.get_layer("logits")
        inbound = head._inbound_nodes[0].inbound_layers  # noqa: SLF001
        return (inbound[0] if isinstance(inbound, list) else inbound).name

    return [(feeder(teacher), feeder(student))]


#: the distiller's default learning rate (a student trains from scratch; fine-tuning uses 1e-4)
LEARNING_RATE = 1e-3


def distill(
    teacher: keras.Model,
    student: keras.Model,
    data: Any,
    *,
    unlabeled: Any = None,
    **options: Any,
) -> dict[str, list[float]]:
    """Train ``student`` in place from ``teacher`` on ``data`` (a ``FitData``); returns the history.

    ``options``: the :class:`kseg.optimize._train.FitBudget` by keyword (``epochs`` is required;
    ``learning_rate`` defaults to :data:`LEARNING_RATE`) and the :class:`Distiller`'s loss options
    (``alpha``, ``temperature``, ``attention_pairs``, ``beta``). With ``augment`` the teacher
    labels every augmented view (:func:`kseg.optimize._train.augment_pair`).
    ``unlabeled``: images ``(N, S, S, C)`` without masks (a transfer set). Each training step then
    adds ``(1 - alpha) * T^2 * KL`` on a batch of them to the loss of the labeled batch; the
    number of steps stays one pass over the labeled set per epoch.
    """
    from kseg.optimize._train import FitBudget, history, resolve_loss

    budget, loss_options = FitBudget.split(options, learning_rate=LEARNING_RATE)
    keras.utils.set_random_seed(budget.seed)
    distiller = Distiller(student, teacher, task_loss=resolve_loss(budget.loss), **loss_options)
    distiller.compile(optimizer=budget.optimizer(data), run_eagerly=budget.run_eagerly)
    hist = distiller.fit(
        **budget.inputs(data, unlabeled), epochs=budget.epochs, verbose=budget.verbose
    )
    return history(hist)


def distill_with_baseline(
    teacher: keras.Model,
    make_student: Any,
    data: Any,
    *,
    unlabeled: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Distill a fresh student and train an identical one alone with the same budget and seed.

    ``options``: :func:`distill`'s; its :class:`kseg.optimize._train.FitBudget` is also the
    baseline's.
    ``make_student()`` must return a new, identically initialised student each call (same
    seed). Returns ``{"student", "baseline", "metrics": {teacher, student, baseline}, ...}`` with
    validation Dice/IoU, so the benefit of the teacher is measured, not assumed. ``unlabeled``
    images (see :func:`distill`) reach only the distilled student: they carry no masks, and using
    them is what a teacher makes possible; both students take the same number of steps.
    """
    from kseg.optimize._train import FitBudget, evaluate

    budget, loss_options = FitBudget.split(options, learning_rate=LEARNING_RATE)
    keras.utils.set_random_seed(budget.seed)
    student = make_student()
    keras.utils.set_random_seed(budget.seed)
    baseline = make_student()
    hist_d = distill(teacher, student, data, unlabeled=unlabeled, **options)
    hist_b = budget.fit(baseline, data)
    metrics = {
        "teacher": evaluate(teacher, data.x_val, data.y_val),
        "student": evaluate(student, data.x_val, data.y_val),
        "baseline": evaluate(baseline, data.x_val, data.y_val),
    }
    metrics["student_minus_baseline_dice"] = (
        metrics["student"]["dice"] - metrics["baseline"]["dice"]
    )
    metrics["teacher_minus_student_dice"] = metrics["teacher"]["dice"] - metrics["student"]["dice"]
    return {
        "student": student,
        "baseline": baseline,
        "metrics": metrics,
        "params": {"teacher": int(teacher.count_params()), "student": int(student.count_params())},
        "history": {"distilled": hist_d, "baseline": hist_b},
        "settings": {
            "epochs": budget.epochs,
            "batch_size": budget.batch_size,
            "learning_rate": budget.learning_rate,
            "lr_schedule": budget.lr_schedule,
            "seed": budget.seed,
            "augment": budget.augment,
            "unlabeled_images": 0 if unlabeled is None else int(len(unlabeled)),
            **{
                k: v
                for k, v in loss_options.items()
                if isinstance(v, (int, float, str, list, tuple))
            },
        },
    }
